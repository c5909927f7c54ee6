//! The internal event bus: what happens to calls, money and messages, as typed JSON events,
//! fanned out to whoever listens (the `/v1/events` Server-Sent Events stream), and to the
//! webhook outbox through a feed that loses nothing ([`EventBus::with_durable_feed`]).
//! Publishing never blocks: a stream listener that falls behind misses events and is told so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::store::clock::ser_time;
use crate::store::now_ms;

/// Events a listener may lag behind before it starts missing them.
const BACKLOG: usize = 4096;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusEvent {
    /// Increasing within a process run (SSE `id`).
    pub seq: u64,
    /// `call.started`, `call.answered`, `call.ended`, `turn.completed`, `lease.final_units`,
    /// `sms.received`, `sms.status`, `chat.message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account_id: String,
    #[serde(serialize_with = "ser_time")]
    pub at: i64,
    pub data: Value,
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<BusEvent>>,
    seq: Arc<AtomicU64>,
    /// Every event, unbounded and never dropped: the webhook outbox's feed.
    durable: Option<tokio::sync::mpsc::UnboundedSender<Arc<BusEvent>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(BACKLOG).0,
            seq: Arc::new(AtomicU64::new(0)),
            durable: None,
        }
    }
}

impl EventBus {
    /// A bus that also hands every event to the returned receiver, losing none (for the
    /// webhook outbox, which must not miss an event however busy it is).
    pub fn with_durable_feed() -> (
        EventBus,
        tokio::sync::mpsc::UnboundedReceiver<Arc<BusEvent>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let bus = EventBus {
            durable: Some(tx),
            ..EventBus::default()
        };
        (bus, rx)
    }

    pub fn publish(&self, kind: &'static str, account_id: &str, data: Value) {
        let event = BusEvent {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            kind,
            account_id: account_id.to_string(),
            at: now_ms(),
            data,
        };
        let event = Arc::new(event);
        if let Some(durable) = &self.durable {
            let _ = durable.send(event.clone());
        }
        // No listener is not an error: events are for whoever is listening now.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_events_in_order() {
        let bus = EventBus::default();
        bus.publish("call.started", "A", serde_json::json!({}));
        let mut rx = bus.subscribe();
        bus.publish("call.answered", "A", serde_json::json!({"id": "c1"}));
        bus.publish("call.ended", "B", serde_json::json!({"id": "c2"}));
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(
            (a.kind, a.seq, a.data["id"].as_str()),
            ("call.answered", 2, Some("c1"))
        );
        assert_eq!((b.kind, b.account_id.as_str()), ("call.ended", "B"));
    }
}
