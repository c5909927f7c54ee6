//! Accounts' SMS rates across nodes: `sms_rate:{account}` is a sorted set of the sends of
//! the last minute on every node, each scored with its time on Redis's clock. Taking a send
//! is one Lua script, so nodes sending for one account together keep to its
//! `sms_per_minute` (each node alone would allow the whole rate).

use std::sync::LazyLock;

use super::{Redis, RedisError, NOW_MS};

/// The window of the rate.
const WINDOW_MS: i64 = 60_000;

/// KEYS[1]: the account's sends. ARGV[1]: the send's id, ARGV[2]: the rate per minute.
/// Drops sends older than a minute; then 0 if the send was taken, else how many ms until
/// the oldest send leaves the window.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW_MS}\
         redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - {WINDOW_MS})
         if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
           local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
           return math.max(1, tonumber(oldest[2]) + {WINDOW_MS} - now)
         end
         redis.call('ZADD', KEYS[1], now, ARGV[1])
         redis.call('PEXPIRE', KEYS[1], {WINDOW_MS} + 1000)
         return 0"
    ))
});

/// Takes one of `account`'s `per_minute` sends for message `id`; Some(ms to wait) when the
/// last minute is full.
pub async fn take(
    redis: &Redis,
    account: &str,
    per_minute: u32,
    id: &str,
) -> Result<Option<u64>, RedisError> {
    let key = redis.key(&format!("sms_rate:{account}"));
    let wait: i64 = redis
        .run("take an SMS send", |mut c| async move {
            Ok(TAKE
                .key(&key)
                .arg(id)
                .arg(per_minute)
                .invoke_async(&mut c)
                .await?)
        })
        .await?;
    Ok((wait > 0).then_some(wait as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;

    #[tokio::test]
    async fn two_nodes_share_one_accounts_rate() {
        let Some(url) = std::env::var("PARLEY_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("PARLEY_TEST_REDIS_URL is not set: the shared SMS rate is not tested");
            return;
        };
        let config = RedisConfig {
            url,
            prefix: format!("parley_test_{}:", crate::store::random_id("", 8)),
            ..RedisConfig::default()
        };
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let a = Redis::new(&config, metrics.clone()).unwrap();
        let b = Redis::new(&config, metrics).unwrap();
        assert_eq!(take(&a, "acc", 3, "m1").await.unwrap(), None);
        assert_eq!(take(&b, "acc", 3, "m2").await.unwrap(), None);
        assert_eq!(take(&a, "acc", 3, "m3").await.unwrap(), None);
        let wait = take(&b, "acc", 3, "m4")
            .await
            .unwrap()
            .expect("the minute is full");
        assert!(wait > 50_000 && wait <= 60_000, "{wait}");
        assert_eq!(
            take(&b, "other", 3, "m5").await.unwrap(),
            None,
            "per account"
        );
    }
}
