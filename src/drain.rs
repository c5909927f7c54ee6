//! Graceful shutdown. On SIGTERM (or Ctrl-C) Parley stops taking calls: new INVITEs get 503
//! with Retry-After (a proxy or carrier tries another node), `/readyz` answers "draining"
//! (a load balancer stops sending), and `POST /v1/calls` is refused. Calls in progress go on
//! for up to `call.drain_s`; the rest are then hung up with BYE, so their leases settle and
//! their records are written before the process exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::cdr::CdrWriter;

/// Whether this node is draining; shared by the call manager, the API and the shutdown.
#[derive(Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How often the drain looks at what is left.
const POLL: Duration = Duration::from_millis(100);
/// After the BYEs, how long calls get to end and records to be written.
const FINISH: Duration = Duration::from_secs(10);
/// After draining, how long open HTTP connections (event streams) get to finish.
pub const CONNECTIONS_GRACE: Duration = Duration::from_secs(2);

/// The longest a stop can take with `call.drain_s = drain_s`: calls finishing, then the BYEs
/// and records, then open connections. A supervisor's stop timeout (Docker's stop grace,
/// systemd's TimeoutStopSec) below this kills the node while it still writes records.
pub fn longest_stop(drain_s: u64) -> Duration {
    Duration::from_secs(drain_s) + FINISH + CONNECTIONS_GRACE
}

/// Drains this node: no new calls, then up to `limit` for the calls in progress to end,
/// then BYE for the rest (`hang_up_all`, which says how many it hung up), then their
/// records written.
pub async fn drain(
    drain: &Drain,
    metrics: &Metrics,
    hang_up_all: impl FnOnce() -> usize,
    cdrs: &CdrWriter,
    limit: Duration,
) {
    drain.start();
    let active = || metrics.active_calls.load(Ordering::Relaxed);
    tracing::info!(calls = active(), limit = ?limit, "draining: no new calls; waiting for the calls in progress");
    let until = tokio::time::Instant::now() + limit;
    while active() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
    if active() > 0 {
        let left = hang_up_all();
        tracing::info!(calls = left, "drain time is up: hung up the calls left");
    }
    let until = tokio::time::Instant::now() + FINISH;
    while (active() > 0 || cdrs.pending() > 0) && tokio::time::Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        calls = active(),
        records_unwritten = cdrs.pending(),
        "drained"
    );
}
