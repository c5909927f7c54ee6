//! The RTP port pool: even ports for RTP with the odd port above for RTCP (RFC 3550 §11),
//! handed out round-robin so a just-released port is not reused at once (late packets of an
//! old call must not land in a new one).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::config::PortRange;
use crate::metrics::Metrics;

/// A bound RTP/RTCP socket pair; its port returns to the pool on drop.
#[derive(Debug)]
pub struct RtpPorts {
    pub rtp: UdpSocket,
    /// Held so that no one else takes the RTCP port; RTCP itself comes with the media engine.
    pub rtcp: UdpSocket,
    pub port: u16,
    pool: Arc<PortPool>,
}

impl Drop for RtpPorts {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}

#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    free: Mutex<VecDeque<u16>>,
    metrics: Arc<Metrics>,
}

impl PortPool {
    pub fn new(range: PortRange, ip: IpAddr, metrics: Arc<Metrics>) -> Arc<PortPool> {
        let first = range.start + range.start % 2;
        let free = (first..range.end)
            .step_by(2)
            .filter(|p| *p < range.end)
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

    /// Takes the next pair that can actually be bound; ports some other process holds are
    /// skipped and put back at the end.
    pub fn allocate(self: &Arc<Self>) -> Option<RtpPorts> {
        let tries = self.available();
        for _ in 0..tries {
            let port = self.free.lock().expect("port pool lock").pop_front()?;
            let bound = UdpSocket::bind(SocketAddr::new(self.ip, port)).and_then(|rtp| {
                let rtcp = UdpSocket::bind(SocketAddr::new(self.ip, port + 1))?;
                Ok((rtp, rtcp))
            });
            match bound {
                Ok((rtp, rtcp)) => {
                    self.metrics
                        .rtp_ports_in_use
                        .fetch_add(1, Ordering::Relaxed);
                    return Some(RtpPorts {
                        rtp,
                        rtcp,
                        port,
                        pool: self.clone(),
                    });
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "RTP port busy, skipping");
                    self.free.lock().expect("port pool lock").push_back(port);
                }
            }
        }
        None
    }

    fn release(&self, port: u16) {
        self.metrics
            .rtp_ports_in_use
            .fetch_sub(1, Ordering::Relaxed);
        self.free.lock().expect("port pool lock").push_back(port);
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
        let c = pool.allocate().unwrap();
        assert_eq!(c.port, released);
        drop((b, c));
        assert_eq!(metrics.rtp_ports_in_use.load(Ordering::Relaxed), 0);
    }
}
