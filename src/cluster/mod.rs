//! State that Parley nodes share through Redis when `redis.url` is set: the per-account
//! concurrent-call slots ([`slots`]), the live-call registry ([`calls`]) and the accounts'
//! SMS rates ([`sms_rate`]).
//!
//! Every key and channel starts with `redis.prefix` (`parley:` by default):
//!
//! | key | type | what |
//! |---|---|---|
//! | `slots:{account}` | sorted set | the account's calls in progress on every node: call id → expiry |
//! | `call:{id}` | hash, TTL | a live call: `node` (who holds it) and `call` (its `/v1/calls` JSON) |
//! | `calls` | sorted set | every node's live calls: call id → expiry |
//! | `calls:{account}` | sorted set | one account's live calls: call id → expiry |
//! | `node:{node}:hangup` | pub/sub channel | call ids the node is asked to hang up |
//! | `sms_rate:{account}` | sorted set | the account's SMS sends of the last minute: id → time |
//!
//! Expiry times are Redis's own clock (`TIME`, read inside Lua scripts), so nodes whose clocks
//! disagree still agree on what has expired. Each node refreshes its entries every third of
//! `redis.ttl_s`; the entries of a node that died stop counting and being listed after
//! `redis.ttl_s`, and the keys themselves expire when nobody refreshes them.
//!
//! Redis is never in the way of a call: every operation has a deadline ([`OP_TIMEOUT`]), a
//! failure is logged (once per outage, then at debug), counted in
//! `parley_redis_errors_total`, and for a second after one the node does not try again
//! ([`Redis::run`] fails at once). Callers fall back to this node's own state.

pub mod calls;
pub mod slots;
pub mod sms_rate;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::metrics::Metrics;

/// How long one Redis operation may take before the node goes on without it.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// After a failure, how long operations fail at once instead of waiting on Redis again.
const BACKOFF: Duration = Duration::from_secs(1);

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis failed less than {0:?} ago; not trying yet")]
    Backoff(Duration),
    #[error("unexpected answer from redis: {0}")]
    Answer(String),
}

/// The node's connection to the shared Redis.
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    node: String,
    ttl: Duration,
    metrics: Arc<Metrics>,
    /// Until when operations fail at once (set by a failure).
    backoff_until: Mutex<Option<Instant>>,
    /// Whether the last operation failed (to log an outage once, and its end).
    failing: AtomicBool,
}

impl Redis {
    /// A connection to `config.url`, made on first use (an unreachable Redis does not stop
    /// the node from starting); the node's id is `config.node_id` or a random one. Needs a
    /// tokio runtime.
    pub fn new(config: &RedisConfig, metrics: Arc<Metrics>) -> Result<Arc<Redis>, RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)?;
        let node = if config.node_id.is_empty() {
            crate::store::random_id("node_", 12)
        } else {
            config.node_id.clone()
        };
        Ok(Arc::new(Redis {
            client,
            conn,
            prefix: config.prefix.clone(),
            node,
            ttl: Duration::from_secs(config.ttl_s),
            metrics,
            backoff_until: Mutex::new(None),
            failing: AtomicBool::new(false),
        }))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `name` under the configured prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// How long an entry lives without a refresh, in ms.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// How often the node refreshes its entries.
    pub fn refresh_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Runs `op` on the shared connection within [`OP_TIMEOUT`]. A failure is logged (once
    /// per outage), counted, and makes the next second's operations fail at once.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let backing_off = self
            .backoff_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until);
        let result = if backing_off {
            Err(RedisError::Backoff(BACKOFF))
        } else {
            match tokio::time::timeout(OP_TIMEOUT, op(self.conn.clone())).await {
                Ok(result) => result,
                Err(_) => Err(RedisError::Timeout(OP_TIMEOUT)),
            }
        };
        match &result {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(what, "Redis answers again");
                }
            }
            Err(e) => {
                Metrics::inc(&self.metrics.redis_errors);
                if !backing_off {
                    if let Ok(mut until) = self.backoff_until.lock() {
                        *until = Some(Instant::now() + BACKOFF);
                    }
                }
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(what, error = %e, "Redis failed; this node goes on with its own state until it answers again");
                } else {
                    tracing::debug!(what, error = %e, "Redis failed");
                }
            }
        }
        result
    }

    /// A connection of its own for subscribing (pub/sub holds its connection).
    async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        match tokio::time::timeout(OP_TIMEOUT, self.client.get_async_pubsub()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RedisError::Timeout(OP_TIMEOUT)),
        }
    }
}

/// Milliseconds on Redis's clock, computed inside a script (prepended to the scripts that
/// stamp expiry times).
const NOW_MS: &str =
    "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n";

/// Lua that makes sure the key `KEYS[k]` lives at least `ARGV[a]` ms more (sets of entries
/// refreshed by several nodes: the latest refresh decides).
fn extend(key: usize, ttl_arg: usize) -> String {
    format!(
        "if redis.call('PTTL', KEYS[{key}]) < tonumber(ARGV[{ttl_arg}]) then redis.call('PEXPIRE', KEYS[{key}], ARGV[{ttl_arg}]) end\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_and_is_counted() {
        // A port nothing listens on: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RedisConfig {
            url: format!("redis://127.0.0.1:{port}"),
            ..RedisConfig::default()
        };
        let metrics = Arc::new(Metrics::default());
        let redis = Redis::new(&config, metrics.clone()).unwrap();
        assert!(redis.node().starts_with("node_"));
        assert_eq!(redis.key("calls"), "parley:calls");
        let ping = |r: Arc<Redis>| async move {
            r.run("ping", |mut c| async move {
                Ok(redis::cmd("PING").query_async::<String>(&mut c).await?)
            })
            .await
        };
        let started = Instant::now();
        assert!(ping(redis.clone()).await.is_err());
        // Within the backoff the next one does not even try.
        assert!(matches!(
            ping(redis.clone()).await,
            Err(RedisError::Backoff(_))
        ));
        assert!(
            started.elapsed() < OP_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(metrics.redis_errors.load(Ordering::Relaxed), 2);
    }
}
