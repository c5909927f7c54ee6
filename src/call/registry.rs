//! The calls in progress on this node, for `/v1/calls`: who they are for, since when, and a
//! way to end one. A session registers once it is routed to an account and is removed when
//! it ends (its [`LiveEntry`] is dropped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::store::clock::{ser_opt_time, ser_time};

/// A call as `/v1/calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(serialize_with = "ser_time")]
    pub started_at: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub answered_at: Option<i64>,
}

struct Entry {
    call: LiveCall,
    hangup: mpsc::UnboundedSender<()>,
}

/// This node's live calls.
#[derive(Clone, Default)]
pub struct LiveCalls {
    calls: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A session's place in the registry; removed when dropped.
pub struct LiveEntry {
    calls: LiveCalls,
    id: String,
}

impl LiveCalls {
    /// Registers `call`; the receiver gets a message when the API asks to hang it up.
    pub fn register(&self, call: LiveCall) -> (LiveEntry, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = call.id.clone();
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

    pub fn get(&self, id: &str) -> Option<LiveCall> {
        self.calls.lock().ok()?.get(id).map(|e| e.call.clone())
    }

    /// Asks the call's session to hang up; false when there is no such call.
    pub fn hang_up(&self, id: &str) -> bool {
        let Ok(calls) = self.calls.lock() else {
            return false;
        };
        calls.get(id).is_some_and(|e| e.hangup.send(()).is_ok())
    }
}

impl LiveEntry {
    /// The call is now `state` (an outbound call: `dialing`, then `ringing`).
    pub fn state(&self, state: &str) {
        if let Ok(mut calls) = self.calls.calls.lock() {
            if let Some(e) = calls.get_mut(&self.id) {
                e.call.state = state.into();
            }
        }
    }

    /// The call was answered at `at_ms`.
    pub fn answered(&self, at_ms: i64) {
        if let Ok(mut calls) = self.calls.calls.lock() {
            if let Some(e) = calls.get_mut(&self.id) {
                e.call.state = "answered".into();
                e.call.answered_at = Some(at_ms);
            }
        }
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.calls.lock() {
            calls.remove(&self.id);
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
        assert!(live.hang_up("c1"));
        assert!(a1_hangup.try_recv().is_ok());
        assert!(!live.hang_up("nope"));
        drop(a1);
        assert!(live.get("c1").is_none());
        assert_eq!(live.list(Some("A")).len(), 1);
    }
}
