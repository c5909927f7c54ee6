//! `parley healthcheck`: one `GET /readyz` against the local node, exit 0 when it answers 200.
//!
//! Container images run this as their HEALTHCHECK, so it must not need curl or a shell, and it
//! must finish quickly whatever the node does: every step has a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why the node is not healthy, in words for `docker inspect` and the operator.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("cannot reach {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} did not answer HTTP: {detail}")]
    BadAnswer { addr: SocketAddr, detail: String },
    #[error("GET /readyz on {addr}: HTTP {status}: {body}")]
    NotReady {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
}

/// The address to ask: `http.listen`, with a wildcard address replaced by loopback (a node
/// listening on 0.0.0.0 is reached through 127.0.0.1 from its own container).
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `addr` for `/readyz`; Ok with the body when it answers 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<String, Unhealthy> {
    let unreachable = |source| Unhealthy::Unreachable { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: parley-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(unreachable)?;
    // /readyz answers a few hundred bytes; a node that streams more is not answering it. A
    // connection reset after the answer has arrived still leaves the answer to read.
    let mut answer = Vec::new();
    if let Err(e) = stream.take(64 * 1024).read_to_end(&mut answer) {
        if answer.is_empty() {
            return Err(unreachable(e));
        }
    }
    let (status, body) = parse_answer(&answer).map_err(|detail| Unhealthy::BadAnswer {
        addr,
        detail: detail.to_string(),
    })?;
    if status == 200 {
        Ok(body)
    } else {
        Err(Unhealthy::NotReady { addr, status, body })
    }
}

/// The status code and body of an HTTP/1.x answer read to the end (Connection: close).
fn parse_answer(answer: &[u8]) -> Result<(u16, String), &'static str> {
    let text = String::from_utf8_lossy(answer);
    let status_line = text.lines().next().ok_or("empty answer")?;
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err("not an HTTP/1.x status line");
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_wildcard_listen_address_is_asked_on_loopback() {
        assert_eq!(
            local_target("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            local_target("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            local_target("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    #[test]
    fn answers_are_read_by_status() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready";
        assert_eq!(parse_answer(ok).unwrap(), (200, "ready".into()));
        let draining = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"draining\"}";
        assert_eq!(parse_answer(draining).unwrap().0, 503);
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_answer(b"").is_err());
    }

    /// Serves one connection with `answer`, then closes.
    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request first: closing with some of it unread would reset the
            // connection instead of ending it.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(answer.as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
        addr
    }

    #[test]
    fn ready_only_on_200() {
        let t = Duration::from_secs(5);
        let ok = serve_once("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"status\":\"ready\"}");
        assert!(check(ok, t).unwrap().contains("ready"));
        let busy = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\ndraining");
        match check(busy, t) {
            Err(Unhealthy::NotReady {
                status: 503, body, ..
            }) => assert_eq!(body, "draining"),
            other => panic!("expected 503, got {other:?}"),
        }
    }

    #[test]
    fn nobody_listening_is_unreachable() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(matches!(
            check(addr, Duration::from_secs(2)),
            Err(Unhealthy::Unreachable { .. })
        ));
    }
}
