//! The live-call registry in Redis: each node writes its calls in progress (`call:{id}`, a
//! hash of `node` and the call's `/v1/calls` JSON, with a TTL; indexed by `calls` and
//! `calls:{account}`, sorted sets of ids scored with their expiry) and refreshes them, so any
//! node lists every node's calls. A node asked to hang up another node's call publishes its id
//! on that node's channel `node:{node}:hangup`, which the holder subscribes to.

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{extend, Redis, RedisError, NOW_MS};

/// A call as the nodes share it: stored as its JSON, indexed by its id and its account. The
/// live-call registry (`call::registry`) says what that is; this module only keeps it.
pub trait SharedCall: Serialize + DeserializeOwned {
    fn id(&self) -> &str;
    fn account_id(&self) -> &str;
}

/// KEYS: the call's hash, `calls`, `calls:{account}`. ARGV: the call id, the node, the
/// call's JSON, time to live (ms). Writes the call and pushes on its expiry in both indexes.
/// Sent with EVAL (pipelined, one per call).
static PUT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{NOW_MS}\
         redis.call('HSET', KEYS[1], 'node', ARGV[2], 'call', ARGV[3])
         redis.call('PEXPIRE', KEYS[1], ARGV[4])
         redis.call('ZADD', KEYS[2], now + ARGV[4], ARGV[1])
         redis.call('ZADD', KEYS[3], now + ARGV[4], ARGV[1])
         {}{}return 1",
        extend(2, 4),
        extend(3, 4)
    )
});

/// KEYS[1]: an index. Drops its expired ids and returns the others.
static LIVE_IDS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW_MS}\
         redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
         return redis.call('ZRANGE', KEYS[1], 0, -1)"
    ))
});

fn call_key(redis: &Redis, id: &str) -> String {
    redis.key(&format!("call:{id}"))
}

fn index_key(redis: &Redis, account: Option<&str>) -> String {
    match account {
        Some(account) => redis.key(&format!("calls:{account}")),
        None => redis.key("calls"),
    }
}

fn hangup_channel(redis: &Redis, node: &str) -> String {
    redis.key(&format!("node:{node}:hangup"))
}

/// Writes (or refreshes) this node's `calls`.
pub async fn put<C: SharedCall>(redis: &Redis, calls: &[C]) -> Result<(), RedisError> {
    if calls.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for call in calls {
        let json = serde_json::to_string(call).map_err(|e| RedisError::Answer(e.to_string()))?;
        // EVALSHA in a pipeline needs the script loaded; the script is small, so send it.
        pipe.cmd("EVAL")
            .arg(PUT.as_str())
            .arg(3)
            .arg(call_key(redis, call.id()))
            .arg(index_key(redis, None))
            .arg(index_key(redis, Some(call.account_id())))
            .arg(call.id())
            .arg(redis.node())
            .arg(json)
            .arg(redis.ttl_ms())
            .ignore();
    }
    redis
        .run("write live calls", |mut c| async move {
            Ok(pipe.query_async::<()>(&mut c).await?)
        })
        .await
}

/// Removes the call `id` of `account`.
pub async fn remove(redis: &Redis, id: &str, account: &str) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .del(call_key(redis, id))
        .ignore()
        .zrem(index_key(redis, None), id)
        .ignore()
        .zrem(index_key(redis, Some(account)), id)
        .ignore();
    redis
        .run("remove a live call", |mut c| async move {
            Ok(pipe.query_async::<()>(&mut c).await?)
        })
        .await
}

/// Every node's calls of `account` (of every account for None), each with the node that
/// holds it, in no particular order.
pub async fn list<C: SharedCall>(
    redis: &Redis,
    account: Option<&str>,
) -> Result<Vec<(String, C)>, RedisError> {
    let index = index_key(redis, account);
    let ids: Vec<String> = redis
        .run("list live calls", |mut c| async move {
            Ok(LIVE_IDS.key(&index).invoke_async(&mut c).await?)
        })
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HMGET")
            .arg(call_key(redis, id))
            .arg("node")
            .arg("call");
    }
    let found: Vec<(Option<String>, Option<String>)> = redis
        .run("read live calls", |mut c| async move {
            Ok(pipe.query_async(&mut c).await?)
        })
        .await?;
    // An id whose hash expired since (its node died) is skipped.
    Ok(found
        .into_iter()
        .filter_map(|(node, json)| Some((node?, serde_json::from_str(&json?).ok()?)))
        .collect())
}

/// The call `id` on any node, with the node that holds it.
pub async fn get<C: SharedCall>(
    redis: &Redis,
    id: &str,
) -> Result<Option<(String, C)>, RedisError> {
    let key = call_key(redis, id);
    let (node, json): (Option<String>, Option<String>) = redis
        .run("read a live call", |mut c| async move {
            Ok(redis::cmd("HMGET")
                .arg(&key)
                .arg("node")
                .arg("call")
                .query_async(&mut c)
                .await?)
        })
        .await?;
    Ok(
        match (node, json.and_then(|j| serde_json::from_str(&j).ok())) {
            (Some(node), Some(call)) => Some((node, call)),
            _ => None,
        },
    )
}

/// Asks `node` to hang up the call `id`; false when no node listens on its channel (it is
/// gone, and so is the call).
pub async fn ask_hang_up(redis: &Redis, node: &str, id: &str) -> Result<bool, RedisError> {
    let channel = hangup_channel(redis, node);
    let receivers: i64 = redis
        .run("ask for a hang-up", |mut c| async move {
            Ok(redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(id)
                .query_async(&mut c)
                .await?)
        })
        .await?;
    Ok(receivers > 0)
}

/// How often the subscription is checked with a PING (a connection that silently died).
const PUBSUB_PING: Duration = Duration::from_secs(15);
/// Wait before subscribing again after the subscription failed.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Subscribes to this node's hang-up channel and hands each call id to `hang_up`, for as
/// long as it wants (it returns false once the registry is gone), subscribing again whenever
/// the connection drops.
pub async fn serve_hang_ups(redis: std::sync::Arc<Redis>, hang_up: impl Fn(&str) -> bool) {
    let channel = hangup_channel(&redis, redis.node());
    loop {
        match subscription(&redis, &channel, &hang_up).await {
            Ok(false) => return,
            Ok(true) => {
                tracing::warn!(%channel, "the hang-up subscription ended; subscribing again")
            }
            Err(e) => {
                crate::metrics::Metrics::inc(&redis.metrics.redis_errors);
                tracing::debug!(%channel, error = %e, "cannot subscribe to hang-up requests");
            }
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// One subscription, until its connection ends (Ok(true)) or the registry is gone
/// (Ok(false)).
async fn subscription(
    redis: &Redis,
    channel: &str,
    hang_up: &impl Fn(&str) -> bool,
) -> Result<bool, RedisError> {
    let mut pubsub = redis.pubsub().await?;
    tokio::time::timeout(super::OP_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| RedisError::Timeout(super::OP_TIMEOUT))??;
    tracing::debug!(%channel, "subscribed to hang-up requests");
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PUBSUB_PING);
    ping.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(true) };
                let Ok(id) = message.get_payload::<String>() else { continue };
                tracing::info!(call = %id, "hang-up asked by another node");
                if !hang_up(&id) {
                    return Ok(false);
                }
            }
            _ = ping.tick() => {
                let answer = tokio::time::timeout(super::OP_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answer, Ok(Ok(_))) {
                    return Ok(true);
                }
            }
        }
    }
}
