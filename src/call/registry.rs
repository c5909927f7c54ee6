//! The calls in progress on this node, for `/v1/calls`: who they are for, since when, and a
//! way to end one. A session registers once it is routed to an account and is removed when
//! it ends (its [`LiveEntry`] is dropped).
//!
//! With `redis.url` ([`LiveCalls::shared`]) the node also writes its calls to Redis (in order,
//! from one task, and again every third of `redis.ttl_s`) and takes hang-up requests for them
//! from the other nodes, so the `cluster_*` methods see and end every node's calls. This
//! node's own map stays the truth about its calls: Redis failing only narrows the view to
//! them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::core::HangupCause;

use crate::cluster::{calls as shared_calls, Redis};
use crate::store::clock::{parse_rfc3339, ser_opt_time, ser_time};

/// A call as `/v1/calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    /// The id its detail record will have.
    pub id: String,
    pub call_id: String,
    pub account_id: String,
    pub agent_id: Option<String>,
    pub number: Option<String>,
    pub from_uri: String,
    pub to_uri: String,
    pub direction: String,
    /// `ringing` (routed, not answered yet) or `answered`.
    pub state: String,
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub started_at: i64,
    #[serde(serialize_with = "ser_opt_time", deserialize_with = "de_opt_time")]
    pub answered_at: Option<i64>,
}

impl shared_calls::SharedCall for LiveCall {
    fn id(&self) -> &str {
        &self.id
    }
    fn account_id(&self) -> &str {
        &self.account_id
    }
}

/// Reads back what [`ser_time`] wrote (calls other nodes wrote to Redis).
fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = String::deserialize(d)?;
    parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom(format!("not RFC 3339: {s:?}")))
}

fn de_opt_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_rfc3339(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not RFC 3339: {s:?}"))),
    }
}

struct Entry {
    call: LiveCall,
    hangup: mpsc::UnboundedSender<HangupCause>,
}

type Calls = Arc<Mutex<HashMap<String, Entry>>>;

/// This node's live calls.
#[derive(Clone, Default)]
pub struct LiveCalls {
    calls: Calls,
    /// With `redis.url`: where this node's calls are written, and everyone's read.
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    redis: Arc<Redis>,
    writes: mpsc::UnboundedSender<Write>,
}

/// A change of this node's calls, for Redis.
enum Write {
    Put(LiveCall),
    Remove { id: String, account: String },
}

/// A session's place in the registry; removed when dropped.
pub struct LiveEntry {
    calls: LiveCalls,
    id: String,
}

impl LiveCalls {
    /// Live calls shared with the other nodes through `redis`: starts the task that writes
    /// this node's calls there and the one that takes hang-up requests for them (needs a
    /// tokio runtime).
    pub fn shared(redis: Arc<Redis>) -> LiveCalls {
        let calls = Calls::default();
        let (writes, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_through(redis.clone(), Arc::downgrade(&calls), rx));
        let weak = Arc::downgrade(&calls);
        tokio::spawn(shared_calls::serve_hang_ups(redis.clone(), move |id| {
            let Some(calls) = weak.upgrade() else {
                return false;
            };
            if !hang_up_in(&calls, id, HangupCause::Api) {
                tracing::info!(call = %id, "asked to hang up a call this node does not have");
            }
            true
        }));
        LiveCalls {
            calls,
            shared: Some(Shared { redis, writes }),
        }
    }

    fn mirror(&self, write: Write) {
        if let Some(shared) = &self.shared {
            let _ = shared.writes.send(write);
        }
    }

    /// Registers `call`; the receiver gets why, when the API or a drain asks to hang it up.
    pub fn register(&self, call: LiveCall) -> (LiveEntry, mpsc::UnboundedReceiver<HangupCause>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = call.id.clone();
        self.mirror(Write::Put(call.clone()));
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(id.clone(), Entry { call, hangup: tx });
        }
        (
            LiveEntry {
                calls: self.clone(),
                id,
            },
            rx,
        )
    }

    /// The calls of `account_id` (all of them for None), oldest first.
    pub fn list(&self, account_id: Option<&str>) -> Vec<LiveCall> {
        let Ok(calls) = self.calls.lock() else {
            return Vec::new();
        };
        let mut list: Vec<LiveCall> = calls
            .values()
            .filter(|e| account_id.is_none_or(|a| e.call.account_id == a))
            .map(|e| e.call.clone())
            .collect();
        list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        list
    }

    /// Asks every call of this node to hang up (the end of a drain); how many were asked.
    pub fn hang_up_all(&self) -> usize {
        let Ok(calls) = self.calls.lock() else {
            return 0;
        };
        calls
            .values()
            .filter(|e| e.hangup.send(HangupCause::Drain).is_ok())
            .count()
    }

    pub fn get(&self, id: &str) -> Option<LiveCall> {
        self.calls.lock().ok()?.get(id).map(|e| e.call.clone())
    }

    /// Asks the call's session to hang up, for `cause`; false when there is no such call.
    pub fn hang_up(&self, id: &str, cause: HangupCause) -> bool {
        hang_up_in(&self.calls, id, cause)
    }

    /// Every node's calls of `account_id` (all accounts' for None), oldest first. Through
    /// Redis when shared (this node's own as it knows them); this node's alone without Redis
    /// or when it fails.
    pub async fn cluster_list(&self, account_id: Option<&str>) -> Vec<LiveCall> {
        let mut list = self.list(account_id);
        let Some(shared) = &self.shared else {
            return list;
        };
        let Ok(everyone) = shared_calls::list::<LiveCall>(&shared.redis, account_id).await else {
            return list;
        };
        let mine: HashSet<String> = list.iter().map(|c| c.id.clone()).collect();
        let me = shared.redis.node();
        // This node's entries that it no longer has have just ended.
        list.extend(everyone.into_iter().filter_map(|(node, call)| {
            (node != me
                && !mine.contains(&call.id)
                && account_id.is_none_or(|a| call.account_id == a))
            .then_some(call)
        }));
        list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        list
    }

    /// The call `id` on any node (this node's only, without Redis or when it fails).
    pub async fn cluster_get(&self, id: &str) -> Option<LiveCall> {
        if let Some(call) = self.get(id) {
            return Some(call);
        }
        let shared = self.shared.as_ref()?;
        match shared_calls::get(&shared.redis, id).await {
            Ok(Some((node, call))) if node != shared.redis.node() => Some(call),
            _ => None,
        }
    }

    /// Asks the session of the call `id` to hang up, on whichever node holds it; false
    /// when no node has it (or its node cannot be reached).
    pub async fn cluster_hang_up(&self, id: &str) -> bool {
        if self.hang_up(id, HangupCause::Api) {
            return true;
        }
        let Some(shared) = &self.shared else {
            return false;
        };
        match shared_calls::get::<LiveCall>(&shared.redis, id).await {
            Ok(Some((node, _))) if node != shared.redis.node() => {
                shared_calls::ask_hang_up(&shared.redis, &node, id)
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        }
    }
}

fn hang_up_in(calls: &Calls, id: &str, cause: HangupCause) -> bool {
    let Ok(calls) = calls.lock() else {
        return false;
    };
    calls.get(id).is_some_and(|e| e.hangup.send(cause).is_ok())
}

impl LiveEntry {
    /// The call is now `state` (an outbound call: `dialing`, then `ringing`).
    pub fn state(&self, state: &str) {
        self.update(|c| c.state = state.into());
    }

    /// Changes the call as listed.
    fn update(&self, change: impl FnOnce(&mut LiveCall)) {
        let Ok(mut calls) = self.calls.calls.lock() else {
            return;
        };
        if let Some(e) = calls.get_mut(&self.id) {
            change(&mut e.call);
            self.calls.mirror(Write::Put(e.call.clone()));
        }
    }

    /// The call was answered at `at_ms`.
    pub fn answered(&self, at_ms: i64) {
        self.update(|call| {
            call.state = "answered".into();
            call.answered_at = Some(at_ms);
        });
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        let removed = match self.calls.calls.lock() {
            Ok(mut calls) => calls.remove(&self.id),
            Err(_) => None,
        };
        if let Some(e) = removed {
            self.calls.mirror(Write::Remove {
                id: self.id.clone(),
                account: e.call.account_id,
            });
        }
    }
}

/// Writes queued at most in one go.
const WRITE_BATCH: usize = 256;

/// Writes this node's calls to Redis as they change, in order, and all of them again every
/// third of `redis.ttl_s` (which also restores them after Redis was away). A removal that
/// failed is tried again at each refresh until the entry would have expired anyway.
async fn write_through(
    redis: Arc<Redis>,
    calls: Weak<Mutex<HashMap<String, Entry>>>,
    mut writes: mpsc::UnboundedReceiver<Write>,
) {
    let mut refresh = tokio::time::interval(redis.refresh_every());
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = Duration::from_millis(redis.ttl_ms());
    let mut unremoved: Vec<(String, String, Instant)> = Vec::new();
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            n = writes.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    return;
                }
                let mut puts = Vec::new();
                for write in batch.drain(..) {
                    match write {
                        Write::Put(call) => puts.push(call),
                        Write::Remove { id, account } => {
                            let _ = shared_calls::put(&redis, &std::mem::take(&mut puts)).await;
                            if shared_calls::remove(&redis, &id, &account).await.is_err() {
                                unremoved.push((id, account, Instant::now()));
                            }
                        }
                    }
                }
                let _ = shared_calls::put(&redis, &puts).await;
            }
            _ = refresh.tick() => {
                let Some(calls) = calls.upgrade() else {
                    return;
                };
                let mine: Vec<LiveCall> = match calls.lock() {
                    Ok(calls) => calls.values().map(|e| e.call.clone()).collect(),
                    Err(_) => Vec::new(),
                };
                drop(calls);
                unremoved.retain(|(.., at)| at.elapsed() < ttl);
                let mut still = Vec::new();
                for (id, account, at) in unremoved.drain(..) {
                    if shared_calls::remove(&redis, &id, &account).await.is_err() {
                        still.push((id, account, at));
                    }
                }
                unremoved = still;
                let _ = shared_calls::put(&redis, &mine).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, account: &str, at: i64) -> LiveCall {
        LiveCall {
            id: id.into(),
            call_id: format!("{id}@test"),
            account_id: account.into(),
            agent_id: None,
            number: None,
            from_uri: "sip:a@b".into(),
            to_uri: "sip:c@d".into(),
            direction: "inbound".into(),
            state: "ringing".into(),
            started_at: at,
            answered_at: None,
        }
    }

    #[test]
    fn a_call_reads_back_as_written() {
        let mut c = call("c1", "A", 1_796_327_062_123);
        c.answered_at = Some(1_796_327_063_000);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("2026-12-03T19:44:22.123Z"), "{json}");
        assert_eq!(serde_json::from_str::<LiveCall>(&json).unwrap(), c);
        let ringing = call("c2", "A", 5);
        let json = serde_json::to_string(&ringing).unwrap();
        assert_eq!(serde_json::from_str::<LiveCall>(&json).unwrap(), ringing);
    }

    #[tokio::test]
    async fn without_redis_the_cluster_view_is_this_nodes() {
        let live = LiveCalls::default();
        let (_a, mut hangup) = live.register(call("c1", "A", 1));
        assert_eq!(live.cluster_list(None).await.len(), 1);
        assert_eq!(live.cluster_list(Some("B")).await.len(), 0);
        assert_eq!(live.cluster_get("c1").await.unwrap().id, "c1");
        assert!(live.cluster_get("c2").await.is_none());
        assert!(live.cluster_hang_up("c1").await);
        assert!(hangup.try_recv().is_ok());
        assert!(!live.cluster_hang_up("c2").await);
    }

    #[test]
    fn calls_are_listed_per_account_hung_up_and_removed() {
        let live = LiveCalls::default();
        let (a1, mut a1_hangup) = live.register(call("c1", "A", 2));
        let (_a2, _) = live.register(call("c2", "A", 1));
        let (_b, _) = live.register(call("c3", "B", 3));
        let ids: Vec<String> = live.list(Some("A")).into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["c2", "c1"]);
        assert_eq!(live.list(None).len(), 3);
        a1.answered(5);
        assert_eq!(live.get("c1").unwrap().state, "answered");
        assert!(live.hang_up("c1", HangupCause::Api));
        assert_eq!(a1_hangup.try_recv().ok(), Some(HangupCause::Api));
        assert!(!live.hang_up("nope", HangupCause::Api));
        drop(a1);
        assert!(live.get("c1").is_none());
        assert_eq!(live.list(Some("A")).len(), 1);
    }
}
