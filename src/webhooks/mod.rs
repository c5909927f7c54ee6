//! Webhook delivery: events go into the store's outbox (one row per subscription that wants
//! them) as they happen; a sender task posts due rows, signed, and retries failures with
//! exponential backoff (1 s, 2 s, 4 s … up to an hour, 15 tries). Every node sends; a row is
//! claimed before it is sent, so it is sent by one node at a time.

pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::events::BusEvent;
use crate::store::webhooks::{Attempt, DueDelivery};
use crate::store::{now_ms, Store};

/// How long a sender holds a claimed delivery (longer than a request may take).
const CLAIM_MS: i64 = 60_000;
/// How often due deliveries are looked for when nothing new arrives.
const POLL: Duration = Duration::from_secs(1);
/// One delivery's HTTP timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the outbox writer (fed by `events`) and the sender.
pub fn start(
    store: Store,
    mut events: mpsc::UnboundedReceiver<Arc<BusEvent>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let wake = Arc::new(Notify::new());
    let (writer_store, writer_wake) = (store.clone(), wake.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let payload = serde_json::to_string(&*event).unwrap_or_default();
            let mut backoff = Duration::from_millis(100);
            loop {
                match writer_store
                    .enqueue_event(&event.account_id, event.kind, &payload)
                    .await
                {
                    Ok(0) => break,
                    Ok(_) => {
                        writer_wake.notify_one();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot queue webhook deliveries; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    });
    tokio::spawn(send_loop(store, wake, metrics));
}

async fn send_loop(store: Store, wake: Arc<Notify>, metrics: Arc<crate::metrics::Metrics>) {
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client");
            return;
        }
    };
    loop {
        let _ = tokio::time::timeout(POLL, wake.notified()).await;
        let due = match store.due_deliveries(now_ms(), 50).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhook outbox");
                continue;
            }
        };
        for d in due {
            if !matches!(
                store.claim_delivery(&d, now_ms() + CLAIM_MS).await,
                Ok(true)
            ) {
                continue;
            }
            let attempt = send(&http, &d).await;
            let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
            crate::metrics::Metrics::inc(if ok {
                &metrics.webhook_delivered
            } else {
                &metrics.webhook_failed_attempts
            });
            let retry_at = now_ms() + backoff_ms(d.attempts + 1);
            if let Err(e) = store.record_attempt(&d, &attempt, retry_at).await {
                tracing::warn!(delivery = d.id, error = %e, "cannot record a webhook attempt");
            }
        }
    }
}

/// Wait before try `n + 1`: 2^(n-1) s, at most an hour.
fn backoff_ms(n: i64) -> i64 {
    (1000i64 << (n - 1).clamp(0, 12)).min(3_600_000)
}

async fn send(http: &reqwest::Client, d: &DueDelivery) -> Attempt {
    let started = Instant::now();
    let now_s = now_ms() / 1000;
    let result = http
        .post(&d.url)
        .header("Content-Type", "application/json")
        .header("Parley-Event", &d.event_type)
        .header("Parley-Delivery", d.id.to_string())
        .header(
            "Parley-Signature",
            sign::signature(&d.secret, now_s, &d.payload),
        )
        .body(d.payload.clone())
        .send()
        .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    match result {
        Ok(r) => Attempt {
            status: Some(i64::from(r.status().as_u16())),
            error: None,
            duration_ms,
        },
        Err(e) => Attempt {
            status: None,
            error: Some(e.to_string()),
            duration_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(14), 3_600_000);
    }
}
