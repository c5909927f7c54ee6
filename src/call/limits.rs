//! Per-account concurrent-call limits (`max_concurrent_calls` on the account). A routed call
//! takes a slot of its account ([`CallLimits::acquire`]) and holds it until its [`CallSlot`]
//! is dropped; an account holding its limit gets no more.
//!
//! Without Redis the count is this node's: the check and the insert happen under one lock.
//! With `redis.url` ([`CallLimits::shared`]) it is every node's: one Lua script checks and
//! takes the slot ([`crate::cluster::slots`]), one task of this node gives slots back in order
//! and refreshes the ones it holds. When Redis fails, the node counts its own calls against
//! the limit (an account may then have up to the limit on each node) and writes them to Redis
//! again once it answers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::cluster::{slots, Redis};
use crate::store::Store;

/// Where calls take their slots.
#[derive(Clone)]
pub struct CallLimits {
    inner: Arc<Inner>,
}

struct Inner {
    /// The accounts' limits.
    store: Store,
    /// The slots this node holds: account → call ids.
    held: Mutex<HashMap<String, HashSet<String>>>,
    /// With `redis.url`: the shared count, and the queue of slots to give back there.
    shared: Option<(Arc<Redis>, mpsc::UnboundedSender<Given>)>,
}

/// A slot given back: (account, call id).
type Given = (String, String);

/// A call's slot of its account; given back when dropped.
pub struct CallSlot {
    inner: Arc<Inner>,
    account: String,
    call: String,
}

impl CallLimits {
    /// Limits counted on this node alone.
    pub fn local(store: Store) -> CallLimits {
        CallLimits {
            inner: Arc::new(Inner {
                store,
                held: Mutex::default(),
                shared: None,
            }),
        }
    }

    /// Limits counted across every node sharing `redis`: starts this node's task that gives
    /// slots back and refreshes the ones held (needs a tokio runtime).
    pub fn shared(store: Store, redis: Arc<Redis>) -> CallLimits {
        let (release, released) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store,
            held: Mutex::default(),
            shared: Some((redis.clone(), release)),
        });
        tokio::spawn(keep_slots(redis, Arc::downgrade(&inner), released));
        CallLimits { inner }
    }

    /// A slot of `account` for `call`, or the account's limit when it holds that many
    /// already. An account whose limit cannot be read is taken to have none.
    pub async fn acquire(&self, account: &str, call: &str) -> Result<CallSlot, i64> {
        let limit = match self.inner.store.call_limit(account).await {
            Ok(limit) => limit,
            Err(e) => {
                tracing::warn!(account, error = %e, "cannot read the account's call limit; not limiting this call");
                None
            }
        };
        if let Some((redis, _)) = &self.inner.shared {
            // A failure is logged and counted there; then this node's own count decides.
            if let Ok(taken) = slots::acquire(redis, account, call, limit).await {
                if !taken {
                    return Err(limit.unwrap_or(0));
                }
                if let Ok(mut held) = self.inner.held.lock() {
                    held.entry(account.to_string())
                        .or_default()
                        .insert(call.to_string());
                }
                return Ok(self.slot(account, call));
            }
        }
        if let Ok(mut held) = self.inner.held.lock() {
            let calls = held.entry(account.to_string()).or_default();
            if let Some(limit) = limit.filter(|&l| calls.len() as i64 >= l) {
                if calls.is_empty() {
                    held.remove(account);
                }
                return Err(limit);
            }
            calls.insert(call.to_string());
        }
        Ok(self.slot(account, call))
    }

    fn slot(&self, account: &str, call: &str) -> CallSlot {
        CallSlot {
            inner: self.inner.clone(),
            account: account.to_string(),
            call: call.to_string(),
        }
    }

    /// The slots of `account` this node holds.
    pub fn held_here(&self, account: &str) -> usize {
        self.inner
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(account).map(HashSet::len))
            .unwrap_or(0)
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.inner.held.lock() {
            if let Some(calls) = held.get_mut(&self.account) {
                calls.remove(&self.call);
                if calls.is_empty() {
                    held.remove(&self.account);
                }
            }
        }
        if let Some((_, release)) = &self.inner.shared {
            let _ = release.send((
                std::mem::take(&mut self.account),
                std::mem::take(&mut self.call),
            ));
        }
    }
}

/// Gives slots back in Redis as calls end, and every third of `redis.ttl_s` refreshes the
/// ones this node holds (adding back any Redis lost) and tries again the give-backs that
/// failed, until those would have expired anyway. One task, so a refresh never re-adds a
/// slot given back after it.
async fn keep_slots(
    redis: Arc<Redis>,
    inner: Weak<Inner>,
    mut released: mpsc::UnboundedReceiver<Given>,
) {
    let mut refresh = tokio::time::interval(redis.refresh_every());
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = Duration::from_millis(redis.ttl_ms());
    let mut failed: Vec<(String, String, Instant)> = Vec::new();
    loop {
        tokio::select! {
            slot = released.recv() => {
                let Some((account, call)) = slot else { return };
                if slots::release(&redis, &account, &call).await.is_err() {
                    failed.push((account, call, Instant::now()));
                }
            }
            _ = refresh.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let held: Vec<(String, Vec<String>)> = match inner.held.lock() {
                    Ok(held) => held
                        .iter()
                        .map(|(account, calls)| (account.clone(), calls.iter().cloned().collect()))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                drop(inner);
                failed.retain(|(.., at)| at.elapsed() < ttl);
                let mut still = Vec::new();
                for (account, call, at) in failed.drain(..) {
                    if slots::release(&redis, &account, &call).await.is_err() {
                        still.push((account, call, at));
                    }
                }
                failed = still;
                let _ = slots::refresh(&redis, &held).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_counts_this_nodes_calls_without_redis() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let account = store.create_account("A").await.unwrap();
        let limits = CallLimits::local(store.clone());
        // No limit: calls are only counted.
        let a = limits.acquire(&account.id, "c1").await.unwrap();
        let b = limits.acquire(&account.id, "c2").await.unwrap();
        assert_eq!(limits.held_here(&account.id), 2);
        store
            .update_account(&account.id, None, Some(Some(2)))
            .await
            .unwrap();
        assert_eq!(limits.acquire(&account.id, "c3").await.err(), Some(2));
        drop(a);
        assert_eq!(limits.held_here(&account.id), 1);
        let c = limits.acquire(&account.id, "c3").await.unwrap();
        assert_eq!(limits.acquire(&account.id, "c4").await.err(), Some(2));
        // Other accounts are not affected; a limit of 0 refuses every call.
        let other = store.create_account("B").await.unwrap();
        let _d = limits.acquire(&other.id, "c5").await.unwrap();
        store
            .update_account(&other.id, None, Some(Some(0)))
            .await
            .unwrap();
        assert_eq!(limits.acquire(&other.id, "c6").await.err(), Some(0));
        drop((b, c));
        assert_eq!(limits.held_here(&account.id), 0);
    }
}
