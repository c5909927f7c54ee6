//! The SIP runtime: the tokio task that owns the sockets and the `Endpoint`, feeding it
//! datagrams, framed TCP messages, commands and the clock, and carrying out what it asks.
//!
//! One task runs the whole endpoint: SIP signalling is cheap next to media, and a single owner
//! keeps the state machine free of locks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::endpoint::{
    CallRef, Endpoint, EndpointConfig, Event, Invite, Output, Peer, TransportKind,
};
use super::message::frame_length;

/// Largest SIP message accepted over TCP; UDP is bounded by the datagram.
const MAX_MESSAGE: usize = 65_535;

/// Commands the call layer sends to the endpoint.
#[derive(Debug)]
pub enum Command {
    Respond {
        call: CallRef,
        code: u16,
        sdp: Option<Vec<u8>>,
        extra: Vec<(&'static str, String)>,
    },
    RespondReinvite {
        call: CallRef,
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    Hangup {
        call: CallRef,
    },
    /// Blind transfer: REFER the peer to `target` (a SIP URI).
    Refer {
        call: CallRef,
        target: String,
    },
    Invite {
        invite: Invite,
        peer: Peer,
        reply: oneshot::Sender<(CallRef, SocketAddr)>,
    },
    /// The node drains: OPTIONS get 503 with this Retry-After from now on, so dispatchers
    /// that probe with OPTIONS stop sending calls ([`crate::sip::endpoint::Endpoint::set_draining`]).
    Drain {
        retry_after_s: u32,
    },
}

/// Counters the runtime keeps for /metrics.
#[derive(Debug, Default)]
pub struct SipStats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_framing_errors: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A cheap handle for sending commands to the SIP runtime.
#[derive(Clone, Debug)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    pub local_addr: SocketAddr,
    pub stats: Arc<SipStats>,
}

impl SipHandle {
    pub fn send(&self, command: Command) {
        // The runtime only stops when the process does; a failed send means shutdown.
        let _ = self.commands.send(command);
    }
}

enum Inbound {
    Tcp {
        conn: u64,
        from: SocketAddr,
        local: SocketAddr,
        bytes: Vec<u8>,
    },
    Connected {
        conn: u64,
        addr: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Closed {
        conn: u64,
        addr: SocketAddr,
    },
}

/// Binds UDP and TCP on `listen` and starts the runtime. Events go to `events`.
/// UDP and TCP on the same port. For port 0 the port UDP was given may already be some
/// other process's TCP port: then another ephemeral port is tried, a few times.
async fn bind_udp_and_tcp(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    const TRIES: usize = 16;
    let mut last = None;
    for _ in 0..TRIES {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

pub async fn start(
    listen: SocketAddr,
    config: EndpointConfig,
    external_ip: Option<IpAddr>,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<SipHandle> {
    let (udp, tcp) = bind_udp_and_tcp(listen).await?;
    let local_addr = udp.local_addr()?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(SipStats::default());
    tokio::spawn(accept_loop(tcp, in_tx.clone(), stats.clone()));
    let runtime = Runtime {
        endpoint: Endpoint::new(config),
        udp: Arc::new(udp),
        local_addr,
        external_ip,
        local_ips: HashMap::new(),
        conns: HashMap::new(),
        conn_by_addr: HashMap::new(),
        events,
        inbound: in_tx,
        stats: stats.clone(),
    };
    tokio::spawn(runtime.run(cmd_rx, in_rx));
    Ok(SipHandle {
        commands: cmd_tx,
        local_addr,
        stats,
    })
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::UnboundedSender<Inbound>,
    stats: Arc<SipStats>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(run_connection(
                    conn,
                    stream,
                    addr,
                    inbound.clone(),
                    stats.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads framed messages from one TCP connection and writes what the runtime queues for it.
/// A framing error closes this connection only.
async fn run_connection(
    conn: u64,
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::UnboundedSender<Inbound>,
    stats: Arc<SipStats>,
) {
    let local = stream.local_addr().unwrap_or(addr);
    let (mut reader, mut writer) = stream.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    if inbound
        .send(Inbound::Connected {
            conn,
            addr,
            writer: wtx,
        })
        .is_err()
    {
        return;
    }
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    'read: loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame_length(&buf, MAX_MESSAGE) {
                Ok(Some(len)) => {
                    let bytes: Vec<u8> = buf.drain(..len).collect();
                    let _ = inbound.send(Inbound::Tcp {
                        conn,
                        from: addr,
                        local,
                        bytes,
                    });
                }
                Ok(None) => break,
                Err(reason) => {
                    stats.tcp_framing_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %addr, %reason, "closing TCP connection: bad framing");
                    break 'read;
                }
            }
        }
    }
    write_task.abort();
    let _ = inbound.send(Inbound::Closed { conn, addr });
}

struct Runtime {
    endpoint: Endpoint,
    udp: Arc<UdpSocket>,
    local_addr: SocketAddr,
    external_ip: Option<IpAddr>,
    local_ips: HashMap<IpAddr, IpAddr>,
    conns: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    conn_by_addr: HashMap<SocketAddr, u64>,
    events: mpsc::UnboundedSender<Event>,
    inbound: mpsc::UnboundedSender<Inbound>,
    stats: Arc<SipStats>,
}

impl Runtime {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
    ) {
        let mut buf = vec![0u8; 65_536];
        let udp = self.udp.clone();
        loop {
            let deadline = self.endpoint.next_timeout();
            tokio::select! {
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        let peer = Peer { transport: TransportKind::Udp, addr: from, conn: None };
                        let local = self.local_for(from.ip());
                        self.endpoint.handle_message(Instant::now(), peer, local, &buf[..n]);
                    }
                    // ICMP port unreachable surfaces here on Linux; it is not fatal.
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                },
                Some(msg) = inbound.recv() => self.on_inbound(msg),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                _ = sleep_until(deadline) => self.endpoint.handle_timeout(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Tcp {
                conn,
                from,
                local,
                bytes,
            } => {
                self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                let peer = Peer {
                    transport: TransportKind::Tcp,
                    addr: from,
                    conn: Some(conn),
                };
                let local = SocketAddr::new(self.external_ip.unwrap_or(local.ip()), local.port());
                self.endpoint
                    .handle_message(Instant::now(), peer, local, &bytes);
            }
            Inbound::Connected { conn, addr, writer } => {
                self.conns.insert(conn, writer);
                self.conn_by_addr.insert(addr, conn);
            }
            Inbound::Closed { conn, addr } => {
                self.conns.remove(&conn);
                if self.conn_by_addr.get(&addr) == Some(&conn) {
                    self.conn_by_addr.remove(&addr);
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Respond {
                call,
                code,
                sdp,
                extra,
            } => {
                let extra: Vec<(&str, String)> = extra.into_iter().collect();
                self.endpoint.respond(now, call, code, sdp, &extra)
            }
            Command::RespondReinvite { call, code, sdp } => {
                self.endpoint.respond_reinvite(now, call, code, sdp)
            }
            Command::Hangup { call } => self.endpoint.hangup(now, call),
            Command::Refer { call, target } => self.endpoint.refer(now, call, &target),
            Command::Invite {
                invite,
                peer,
                reply,
            } => {
                let local = self.local_for(peer.addr.ip());
                let call = self.endpoint.invite(now, invite, peer, local);
                let _ = reply.send((call, local));
            }
            Command::Drain { retry_after_s } => self.endpoint.set_draining(retry_after_s),
        }
    }

    /// Our address as seen from `peer`: the configured external IP, the listen IP, or the
    /// address of the interface that routes to the peer (a UDP connect() does a route lookup
    /// without sending anything).
    fn local_for(&mut self, peer: IpAddr) -> SocketAddr {
        let port = self.local_addr.port();
        if let Some(ip) = self.external_ip {
            return SocketAddr::new(ip, port);
        }
        if !self.local_addr.ip().is_unspecified() {
            return self.local_addr;
        }
        if self.local_ips.len() > 10_000 {
            self.local_ips.clear();
        }
        let ip = *self
            .local_ips
            .entry(peer)
            .or_insert_with(|| local_ip_toward(peer));
        SocketAddr::new(ip, port)
    }

    async fn flush(&mut self) {
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                Output::Transmit { peer, bytes } => {
                    self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    self.transmit(peer, bytes).await
                }
                Output::Event(e) => {
                    let _ = self.events.send(e);
                }
            }
        }
    }

    async fn transmit(&mut self, peer: Peer, bytes: Vec<u8>) {
        match peer.transport {
            TransportKind::Udp => {
                if let Err(e) = self.udp.send_to(&bytes, peer.addr).await {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(to = %peer.addr, error = %e, "UDP send failed");
                }
            }
            TransportKind::Tcp => {
                let conn = peer
                    .conn
                    .filter(|c| self.conns.contains_key(c))
                    .or_else(|| self.conn_by_addr.get(&peer.addr).copied());
                if let Some(writer) = conn.and_then(|c| self.conns.get(&c)) {
                    if writer.send(bytes).is_ok() {
                        return;
                    }
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // No connection: open one (RFC 3261 §18.2.2 for responses, §18.1.1 for requests).
                let inbound = self.inbound.clone();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    match TcpStream::connect(peer.addr).await {
                        Ok(mut stream) => {
                            if stream.write_all(&bytes).await.is_ok() {
                                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                                run_connection(conn, stream, peer.addr, inbound, stats).await;
                            }
                        }
                        Err(e) => {
                            stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(to = %peer.addr, error = %e, "TCP connect failed");
                        }
                    }
                });
            }
        }
    }
}

/// The address of the interface that routes to `peer`. A UDP connect() does the route lookup
/// without sending anything.
pub fn local_ip_toward(peer: IpAddr) -> IpAddr {
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(SocketAddr::new(peer, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(if peer.is_loopback() {
            peer
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_and_tcp_share_one_port_and_a_taken_fixed_port_is_refused() {
        let (udp, tcp) = bind_udp_and_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = udp.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(tcp.local_addr().unwrap().port(), port);
        // A configured port whose TCP side another socket holds is an error, not a
        // different port.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        if std::net::UdpSocket::bind(taken).is_ok() {
            let err = bind_udp_and_tcp(taken).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        }
    }
}
