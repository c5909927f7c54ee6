//! Where a request goes next: RFC 3263 reduced to an A/AAAA lookup and the default port (no
//! NAPTR/SRV). The `parley call` command resolves its target URI here, and calls placed
//! through a trunk (`call::originate`) its proxy.

use super::endpoint::{self, Peer, TransportKind};
use super::headers::SipUri;

/// The peer to send a request for `uri` to: its address when it is one, else its host
/// looked up; the transport from its `transport` parameter (UDP by default).
pub async fn resolve(uri: &SipUri) -> Result<Peer, String> {
    let transport = match uri.transport().map(str::to_ascii_lowercase).as_deref() {
        Some("tcp") => TransportKind::Tcp,
        Some("udp") | None => TransportKind::Udp,
        Some(other) => return Err(format!("transport {other} is not supported")),
    };
    if let Some(peer) = endpoint::uri_peer(uri, transport) {
        return Ok(peer);
    }
    let host = format!("{}:{}", uri.host_port.bare_host(), uri.port_or_default());
    lookup(&host, transport).await
}

/// `host:port` looked up (A/AAAA) as the next hop over `transport`.
pub async fn lookup(host: &str, transport: TransportKind) -> Result<Peer, String> {
    let addr = tokio::net::lookup_host(host)
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    Ok(Peer {
        transport,
        addr,
        conn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_is_its_own_next_hop_and_a_name_is_looked_up() {
        let uri = SipUri::parse("sip:bob@127.0.0.1:5070;transport=tcp").unwrap();
        let peer = resolve(&uri).await.unwrap();
        assert_eq!(peer.addr, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(peer.transport, TransportKind::Tcp);
        let peer = lookup("localhost:5060", TransportKind::Udp).await.unwrap();
        assert!(peer.addr.ip().is_loopback());
        assert_eq!(peer.addr.port(), 5060);
        let sctp = SipUri::parse("sip:bob@127.0.0.1;transport=sctp").unwrap();
        assert!(resolve(&sctp).await.is_err());
    }
}
