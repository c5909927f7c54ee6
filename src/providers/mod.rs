//! Speech-to-text, language-model and text-to-speech providers: one module per kind, one
//! submodule per vendor protocol, all streaming and cancellable.
//!
//! Conventions every provider follows:
//! - Audio crosses this boundary as 16 kHz mono `i16` PCM, whatever the vendor speaks
//!   ([`audio::StreamResampler`] converts).
//! - A stream is a struct holding a channel receiver and the task feeding it; dropping the
//!   stream aborts the task, which closes the vendor connection (that is cancellation).
//! - Failures are [`ProviderError`]s naming the provider. A request is retried with backoff
//!   ([`Retry`]) only when that is safe: before any output was produced, and only for
//!   connection errors, timeouts, 429 and 5xx.
//! - Time to first byte is observed into the kind's histogram ([`Ttfb`]).

pub mod audio;
pub mod llm;
pub mod stt;
pub mod tts;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::Histogram;

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The connection could not be made (DNS, refused, TLS, WebSocket handshake).
    #[error("{provider}: cannot connect to {url}: {reason}")]
    Connect {
        provider: &'static str,
        url: String,
        reason: String,
    },
    /// Nothing arrived within the allowed time.
    #[error("{provider}: no response within {ms} ms")]
    Timeout { provider: &'static str, ms: u64 },
    /// The server answered with an error status.
    #[error("{provider}: HTTP {status}: {body}")]
    Status {
        provider: &'static str,
        status: u16,
        /// The start of the response body (vendors explain errors there).
        body: String,
    },
    /// The server sent something that does not follow the protocol.
    #[error("{provider}: malformed {what}: {detail}")]
    Protocol {
        provider: &'static str,
        what: &'static str,
        detail: String,
    },
    /// The stream ended before it was complete.
    #[error("{provider}: stream ended early: {reason}")]
    Disconnected {
        provider: &'static str,
        reason: String,
    },
    /// Local failure (spawning espeak-ng, reading its output).
    #[error("{provider}: {reason}")]
    Local {
        provider: &'static str,
        reason: String,
    },
}

impl ProviderError {
    /// Whether trying again may help: connection failures, timeouts, 429 and 5xx. Callers
    /// retry only before any output was produced.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } | ProviderError::Timeout { .. } => true,
            ProviderError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The provider that failed.
    pub fn provider(&self) -> &'static str {
        match self {
            ProviderError::Connect { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::Status { provider, .. }
            | ProviderError::Protocol { provider, .. }
            | ProviderError::Disconnected { provider, .. }
            | ProviderError::Local { provider, .. } => provider,
        }
    }
}

/// Retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Further attempts after the first.
    pub retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Retry {
    pub const fn new(retries: u32) -> Retry {
        Retry {
            retries,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }

    /// The wait before retry number `attempt` (1 for the first retry): a random duration up
    /// to `base * 2^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::random::<u64>() % (ms + 1)
        })
    }
}

/// Time-to-first-byte observer of one provider kind (a histogram in `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Ttfb(Option<Arc<Histogram>>);

impl Ttfb {
    pub fn new(histogram: Arc<Histogram>) -> Ttfb {
        Ttfb(Some(histogram))
    }

    /// An observer that records nothing (tools, tests).
    pub fn none() -> Ttfb {
        Ttfb(None)
    }

    pub fn observe(&self, elapsed: Duration) {
        if let Some(h) = &self.0 {
            h.observe(elapsed);
        }
    }
}

/// A task whose output is consumed through a channel; aborted when dropped, so dropping a
/// stream cancels the request behind it.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP client per provider: its connection pool keeps TLS sessions to the vendor warm,
/// which is most of a request's latency. `connect` bounds the TCP+TLS setup only; response
/// timeouts are per request (first byte) and per chunk (idle), set by each provider.
pub fn http_client(connect: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("Parley/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// An error with its causes, on one line ("error sending request: connection refused"): the
/// outermost message alone (reqwest's, tungstenite's) rarely says why.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The first `max` characters of an error body, on one line.
pub fn body_excerpt(body: &str, max: usize) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    one_line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            retries: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        for _ in 0..100 {
            assert!(r.delay(1) <= Duration::from_millis(100));
            assert!(r.delay(3) <= Duration::from_millis(400));
            assert!(r.delay(10) <= Duration::from_millis(500));
        }
        // Jittered: not always the same.
        let d: std::collections::HashSet<_> = (0..50).map(|_| r.delay(3)).collect();
        assert!(d.len() > 5);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let status = |s| ProviderError::Status {
            provider: "x",
            status: s,
            body: String::new(),
        };
        assert!(status(429).retryable());
        assert!(status(503).retryable());
        assert!(!status(400).retryable());
        assert!(!status(401).retryable());
        assert!(ProviderError::Timeout {
            provider: "x",
            ms: 1
        }
        .retryable());
        assert!(!ProviderError::Protocol {
            provider: "x",
            what: "frame",
            detail: String::new()
        }
        .retryable());
    }
}
