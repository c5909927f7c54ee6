//! Per-account concurrent-call slots in Redis: `slots:{account}` is a sorted set of the
//! account's calls in progress on every node, each scored with its expiry (Redis's clock).
//! Taking a slot is one Lua script, so checking the count and adding the call are atomic
//! across nodes; the node holding a call refreshes its expiry, and the slots of a node that
//! died expire instead of leaking (as a plain INCR/DECR counter would).

use std::sync::LazyLock;

use super::{extend, Redis, RedisError, NOW_MS};

/// KEYS[1]: the account's slots. ARGV[1]: the call id, ARGV[2]: time to live (ms),
/// ARGV[3]: the limit (negative: none). Drops expired slots, then takes one unless the
/// account already holds `limit` (a call that holds one keeps it). 1: taken, 0: at the limit.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW_MS}\
         redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
         local limit = tonumber(ARGV[3])
         if limit >= 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
           if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
         end
         redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
         {}return 1",
        extend(1, 2)
    ))
});

/// KEYS[1]: the account's slots. ARGV[1]: time to live (ms), ARGV[2..]: the calls this node
/// holds. Pushes their expiry on (adding any that were lost, e.g. while Redis was away).
static REFRESH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW_MS}\
         for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ARGV[1], ARGV[i]) end
         {}return #ARGV - 1",
        extend(1, 1)
    ))
});

/// KEYS[1]: the account's slots. The slots not expired.
static COUNT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW_MS}\
         redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
         return redis.call('ZCARD', KEYS[1])"
    ))
});

/// The key of `account`'s slots.
pub fn key(redis: &Redis, account: &str) -> String {
    redis.key(&format!("slots:{account}"))
}

/// Takes a slot of `account` for `call` unless it holds `limit` already (None: no limit, the
/// call is only counted). True when taken.
pub async fn acquire(
    redis: &Redis,
    account: &str,
    call: &str,
    limit: Option<i64>,
) -> Result<bool, RedisError> {
    let key = key(redis, account);
    let ttl = redis.ttl_ms();
    let taken: i64 = redis
        .run("take a call slot", |mut c| async move {
            Ok(ACQUIRE
                .key(&key)
                .arg(call)
                .arg(ttl)
                .arg(limit.unwrap_or(-1))
                .invoke_async(&mut c)
                .await?)
        })
        .await?;
    Ok(taken == 1)
}

/// Pushes on the expiry of the slots this node holds, account by account.
pub async fn refresh(redis: &Redis, held: &[(String, Vec<String>)]) -> Result<(), RedisError> {
    for (account, calls) in held.iter().filter(|(_, calls)| !calls.is_empty()) {
        let key = key(redis, account);
        let ttl = redis.ttl_ms();
        let _: i64 = redis
            .run("refresh call slots", |mut c| async move {
                Ok(REFRESH
                    .key(&key)
                    .arg(ttl)
                    .arg(calls)
                    .invoke_async(&mut c)
                    .await?)
            })
            .await?;
    }
    Ok(())
}

/// Gives `call`'s slot of `account` back.
pub async fn release(redis: &Redis, account: &str, call: &str) -> Result<(), RedisError> {
    let key = key(redis, account);
    redis
        .run("release a call slot", |mut c| async move {
            Ok(redis::cmd("ZREM")
                .arg(&key)
                .arg(call)
                .query_async::<i64>(&mut c)
                .await
                .map(|_| ())?)
        })
        .await
}

/// How many slots `account` holds on every node.
pub async fn count(redis: &Redis, account: &str) -> Result<i64, RedisError> {
    let key = key(redis, account);
    redis
        .run("count call slots", |mut c| async move {
            Ok(COUNT.key(&key).invoke_async(&mut c).await?)
        })
        .await
}
