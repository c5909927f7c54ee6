//! The RTP port pool: even ports for RTP with the odd port above for RTCP (RFC 3550 §11),
//! handed out round-robin so a just-released port is not reused at once (late packets of an
//! old call must not land in a new one).
//!
//! Released pairs keep their bound sockets: binding and closing two sockets per call was a
//! measurable share of call setup at thousands of calls per second (docs/benchmarks.md). A
//! reused pair is drained of anything that arrived after its previous call ended.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::config::PortRange;
use crate::metrics::Metrics;

/// A bound RTP/RTCP socket pair; it returns to the pool, still bound, on drop.
#[derive(Debug)]
pub struct RtpPorts {
    sockets: Option<(UdpSocket, UdpSocket)>,
    pub port: u16,
    pool: Arc<PortPool>,
}

impl RtpPorts {
    pub fn rtp(&self) -> &UdpSocket {
        &self.sockets.as_ref().expect("sockets present until drop").0
    }

    pub fn rtcp(&self) -> &UdpSocket {
        &self.sockets.as_ref().expect("sockets present until drop").1
    }
}

impl Drop for RtpPorts {
    fn drop(&mut self) {
        self.pool.release(self.port, self.sockets.take());
    }
}

type Slot = (u16, Option<(UdpSocket, UdpSocket)>);

#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    free: Mutex<VecDeque<Slot>>,
    metrics: Arc<Metrics>,
}

/// Discards datagrams that reached a pooled socket after its call ended.
fn drain(socket: &UdpSocket) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {}
    Ok(())
}

impl PortPool {
    pub fn new(range: PortRange, ip: IpAddr, metrics: Arc<Metrics>) -> Arc<PortPool> {
        let first = range.start + range.start % 2;
        let free = (first..range.end)
            .step_by(2)
            .filter(|p| *p < range.end)
            .map(|p| (p, None))
            .collect();
        Arc::new(PortPool {
            ip,
            free: Mutex::new(free),
            metrics,
        })
    }

    pub fn available(&self) -> usize {
        self.free.lock().expect("port pool lock").len()
    }

    /// Takes the next pair: a kept pair (drained), or a newly bound one; ports some other
    /// process holds are skipped and put back at the end.
    pub fn allocate(self: &Arc<Self>) -> Option<RtpPorts> {
        let tries = self.available();
        for _ in 0..tries {
            let (port, kept) = self.free.lock().expect("port pool lock").pop_front()?;
            let bound = match kept {
                Some((rtp, rtcp)) => drain(&rtp).and(drain(&rtcp)).map(|_| (rtp, rtcp)),
                None => UdpSocket::bind(SocketAddr::new(self.ip, port)).and_then(|rtp| {
                    let rtcp = UdpSocket::bind(SocketAddr::new(self.ip, port + 1))?;
                    Ok((rtp, rtcp))
                }),
            };
            match bound {
                Ok(sockets) => {
                    self.metrics
                        .rtp_ports_in_use
                        .fetch_add(1, Ordering::Relaxed);
                    return Some(RtpPorts {
                        sockets: Some(sockets),
                        port,
                        pool: self.clone(),
                    });
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "RTP port busy, skipping");
                    self.free
                        .lock()
                        .expect("port pool lock")
                        .push_back((port, None));
                }
            }
        }
        None
    }

    fn release(&self, port: u16, sockets: Option<(UdpSocket, UdpSocket)>) {
        self.metrics
            .rtp_ports_in_use
            .fetch_sub(1, Ordering::Relaxed);
        self.free
            .lock()
            .expect("port pool lock")
            .push_back((port, sockets));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_return_to_the_pool() {
        let metrics = Arc::new(Metrics::default());
        let range = PortRange {
            start: 41001,
            end: 41006,
        };
        let pool = PortPool::new(range, "127.0.0.1".parse().unwrap(), metrics.clone());
        assert_eq!(pool.available(), 2, "41002/3 and 41004/5");
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_eq!((a.port % 2, b.port % 2), (0, 0));
        assert!(pool.allocate().is_none(), "exhausted");
        assert_eq!(metrics.rtp_ports_in_use.load(Ordering::Relaxed), 2);
        let released = a.port;
        drop(a);
        assert_eq!(pool.available(), 1);
        // A datagram for the old call arrives after it ended; the next call must not see it.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"late", ("127.0.0.1", released)).unwrap();
        let c = pool.allocate().unwrap();
        assert_eq!(c.port, released);
        let mut buf = [0u8; 16];
        c.rtp().set_nonblocking(true).unwrap();
        assert!(
            c.rtp().recv_from(&mut buf).is_err(),
            "the reused socket was drained"
        );
        // The socket is still bound and working.
        sender.send_to(b"new", ("127.0.0.1", released)).unwrap();
        c.rtp().set_nonblocking(false).unwrap();
        c.rtp()
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (n, _) = c.rtp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        drop((b, c));
        assert_eq!(metrics.rtp_ports_in_use.load(Ordering::Relaxed), 0);
    }
}
