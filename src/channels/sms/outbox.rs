//! Sending SMS: a message is checked and written to the outbox (the `messages` table)
//! first, so nothing asked for is lost; a worker on every node then claims what is due and
//! sends it through Twilio's REST API, retrying 5xx, 429 and network failures with backoff
//! (never other refusals). An account's messages wait for its business hours (API and bulk
//! sends; the agent's replies to someone who just wrote go at once) and keep to its rate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};

use super::hours::BusinessHours;
use super::rest::{OutgoingSms, RetryPolicy, SendError, TwilioRest};
use super::segments;
use crate::config::text::SmsConfig;
use crate::events::EventBus;
use crate::store::directory::e164;
use crate::store::messages::{Message, Outbound, Recorded};
use crate::store::{now_ms, Store, StoreError};

/// The longest body sent (Twilio's limit: 1,600 characters, ten concatenated parts).
pub const MAX_BODY_CHARS: usize = 1_600;
/// The fewest digits a number to text may have.
const MIN_DIGITS: usize = 7;
/// Messages read from the outbox per pass.
const BATCH: i64 = 100;
/// Messages being sent at once by one node.
const IN_FLIGHT: usize = 16;
/// How long a node holds a message it claimed (longer than all its retries take).
const CLAIM: Duration = Duration::from_secs(600);
/// The outbox is looked at least this often (other nodes' messages, missed wake-ups).
const POLL: Duration = Duration::from_secs(2);
/// The window of the per-account rate.
const MINUTE_MS: i64 = 60_000;

/// Who asked for a message: the business's API call, one of a bulk send, or the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Bulk,
    Agent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Bulk => "bulk",
            Source::Agent => "agent",
        }
    }

    /// Business hours hold messages the business starts; a reply in a conversation the
    /// person started (or a text promised during their call) goes at once.
    fn waits_for_hours(self) -> bool {
        !matches!(self, Source::Agent)
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub account_id: String,
    /// One of the account's numbers; None: its first.
    pub from: Option<String>,
    pub to: String,
    pub body: String,
    pub source: Source,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("SMS is not configured (sms.twilio_account_sid and sms.twilio_auth_token)")]
    NotConfigured,
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn field(field: &'static str, message: impl Into<String>) -> SmsError {
    SmsError::Field {
        field,
        message: message.into(),
    }
}

/// An account's messaging settings (`PUT /v1/accounts/{id}/messaging`).
#[derive(Debug, Clone, Default)]
pub struct AccountMessaging {
    pub business_hours: Option<BusinessHours>,
    pub per_minute: Option<u32>,
}

impl AccountMessaging {
    /// The stored settings; parts that no longer read are left out (the API checked them).
    pub fn from_stored(v: &Value) -> AccountMessaging {
        AccountMessaging {
            business_hours: v
                .get("business_hours")
                .filter(|h| !h.is_null())
                .and_then(|h| BusinessHours::from_json(h).ok()),
            per_minute: v["sms_per_minute"].as_u64().map(|n| n as u32),
        }
    }
}

/// The SMS service: validation, the outbox and its worker. Cloning shares it.
#[derive(Clone)]
pub struct Sms {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: SmsConfig,
    rest: Option<TwilioRest>,
    events: EventBus,
    wake: Notify,
    policy: RetryPolicy,
    /// When each account's latest messages were sent by this node (the rate's window,
    /// without Redis or while it is away).
    sent: Mutex<HashMap<String, VecDeque<i64>>>,
    /// With Redis, the rates are kept there, for all nodes together.
    redis: Option<Arc<crate::cluster::Redis>>,
}

impl Sms {
    pub fn new(
        store: Store,
        config: &SmsConfig,
        http: reqwest::Client,
        events: EventBus,
        redis: Option<Arc<crate::cluster::Redis>>,
    ) -> Sms {
        let rest = config.enabled().then(|| {
            TwilioRest::new(
                http,
                &config.twilio_api_url,
                &config.twilio_account_sid,
                &config.twilio_auth_token,
            )
        });
        let policy = RetryPolicy {
            max_attempts: config.max_attempts,
            ..RetryPolicy::default()
        };
        Sms {
            inner: Arc::new(Inner {
                store,
                config: config.clone(),
                rest,
                events,
                wake: Notify::new(),
                policy,
                sent: Mutex::default(),
                redis,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.rest.is_some()
    }

    pub fn config(&self) -> &SmsConfig {
        &self.inner.config
    }

    /// Checks `req` and puts it in the outbox (or finds the message its idempotency key
    /// made). The worker sends it when due.
    pub async fn send(&self, req: &SendRequest) -> Result<Recorded, SmsError> {
        if !self.enabled() {
            return Err(SmsError::NotConfigured);
        }
        let store = &self.inner.store;
        // The shortest numbers in use have 7 digits with their country code (Niue, +683 and
        // four); anything shorter would only be refused by Twilio after a round trip.
        let to = e164(&req.to)
            .filter(|n| n.len() > MIN_DIGITS)
            .ok_or_else(|| field("to", "must be an E.164 number"))?;
        let body = req.body.trim();
        if body.is_empty() {
            return Err(field("body", "must not be empty"));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(field(
                "body",
                format!("is longer than {MAX_BODY_CHARS} characters"),
            ));
        }
        let from = match &req.from {
            Some(raw) => {
                let number = e164(raw).ok_or_else(|| field("from", "must be an E.164 number"))?;
                match store.number(&req.account_id, &number).await {
                    Ok(n) => n.number,
                    Err(StoreError::NotFound(_)) => {
                        return Err(field("from", "is not one of the account's numbers"))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => store
                .numbers(&req.account_id)
                .await?
                .into_iter()
                .next()
                .map(|n| n.number)
                .ok_or_else(|| field("from", "the account has no number to send from"))?,
        };
        let now = now_ms();
        let mut status = "pending";
        let mut send_after = now;
        if req.source.waits_for_hours() {
            let settings = self.account_settings(&req.account_id).await?;
            if let Some(hours) = &settings.business_hours {
                match hours.next_open(now) {
                    Some(open) if open > now => {
                        status = "scheduled";
                        send_after = open;
                    }
                    Some(_) => {}
                    None => {
                        return Err(field(
                            "from",
                            "the account's business hours are never open; change them to send",
                        ))
                    }
                }
            }
        }
        let parts = segments::count(body);
        let recorded = store
            .enqueue_outbound(&Outbound {
                account_id: &req.account_id,
                from: &from,
                to: &to,
                body,
                source: req.source.as_str(),
                idempotency_key: req.idempotency_key.as_deref(),
                status,
                send_after,
                segments: i64::from(parts.count),
                encoding: parts.encoding.as_str(),
            })
            .await?;
        if recorded.created {
            self.inner.wake.notify_one();
        }
        Ok(recorded)
    }

    async fn account_settings(&self, account_id: &str) -> Result<AccountMessaging, StoreError> {
        let stored = self.inner.store.messaging_settings(account_id).await?;
        Ok(AccountMessaging::from_stored(&stored))
    }

    /// Starts this node's outbox worker (nothing when SMS is not configured).
    pub fn start(&self) {
        if !self.enabled() {
            return;
        }
        if self.inner.config.status_callbacks && self.inner.config.public_url.is_empty() {
            tracing::warn!(
                "sms.public_url is empty: messages are sent without a StatusCallback, so \
                 their delivery status stays at what Twilio first answered"
            );
        }
        let sms = self.clone();
        tokio::spawn(async move { sms.run().await });
    }

    async fn run(self) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let now = now_ms();
            match self.inner.store.due_messages(now, BATCH).await {
                Ok(due) => {
                    for message in due {
                        let until = now + CLAIM.as_millis() as i64;
                        match self
                            .inner
                            .store
                            .claim_message(&message.id, now, until)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot claim a message");
                                continue;
                            }
                        }
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let sms = self.clone();
                        tokio::spawn(async move {
                            sms.deliver(message).await;
                            drop(slot);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the SMS outbox"),
            }
            let wait = match self.inner.store.next_due().await {
                Ok(Some(at)) => {
                    Duration::from_millis((at - now_ms()).clamp(0, POLL.as_millis() as i64) as u64)
                }
                _ => POLL,
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
            }
        }
    }

    /// Sends one claimed message, or holds it for business hours or the account's rate.
    async fn deliver(&self, message: Message) {
        let store = &self.inner.store;
        let now = now_ms();
        let settings = self
            .account_settings(&message.account_id)
            .await
            .unwrap_or_default();
        let source_waits = message.source != Source::Agent.as_str();
        if let Some(open) = settings
            .business_hours
            .as_ref()
            .filter(|_| source_waits)
            .and_then(|h| h.next_open(now))
            .filter(|open| *open > now)
        {
            if let Err(e) = store.hold_message(&message.id, "scheduled", open).await {
                tracing::warn!(error = %e, "cannot hold a message for business hours");
            }
            return;
        }
        let per_minute = settings.per_minute.unwrap_or(self.inner.config.per_minute);
        if let Some(free_at) = self.rate(&message, per_minute, now).await {
            if let Err(e) = store.hold_message(&message.id, "pending", free_at).await {
                tracing::warn!(error = %e, "cannot hold a message for the account's rate");
            }
            return;
        }
        let Some(rest) = &self.inner.rest else {
            return;
        };
        let status_callback = (self.inner.config.status_callbacks
            && !self.inner.config.public_url.is_empty())
        .then(|| format!("{}/webhooks/twilio/status", self.inner.config.public_url));
        let sms = OutgoingSms {
            to: message.to.clone(),
            from: message.from.clone(),
            body: message.body.clone(),
            status_callback,
        };
        let previous = message.attempts;
        let (outcome, attempts) = rest.send_with_retry(&sms, &self.inner.policy).await;
        let attempts = previous + i64::from(attempts);
        let saved = match outcome {
            Ok(sent) => {
                tracing::info!(message = %message.id, sid = %sent.sid, attempts, "SMS sent");
                store
                    .message_sent(&message.id, &sent.sid, &sent.status, attempts)
                    .await
            }
            Err(SendError::Rejected {
                status,
                code,
                message: why,
            }) => {
                tracing::warn!(message = %message.id, status, ?code, %why, "Twilio refused the SMS");
                store
                    .message_failed(&message.id, code, &why, attempts)
                    .await
            }
            Err(e) => {
                tracing::warn!(message = %message.id, attempts, error = %e, "SMS not sent; giving up");
                store
                    .message_failed(&message.id, None, &e.to_string(), attempts)
                    .await
            }
        };
        match saved {
            Ok(m) => self.status_event(&m),
            Err(e) => {
                tracing::error!(error = %e, message = %message.id, "cannot record the SMS outcome")
            }
        }
    }

    /// Counts `message`'s send against its account's rate; Some(when a send is next
    /// allowed) when the last minute is full. Shared by every node through Redis when there
    /// is one; this node's own count otherwise, or while Redis does not answer.
    async fn rate(&self, message: &Message, per_minute: u32, now: i64) -> Option<i64> {
        if let Some(redis) = &self.inner.redis {
            let taken =
                crate::cluster::sms_rate::take(redis, &message.account_id, per_minute, &message.id)
                    .await;
            if let Ok(wait) = taken {
                return wait.map(|ms| now + ms as i64);
            }
        }
        self.take_rate(&message.account_id, per_minute, now)
    }

    /// This node's count of the account's sends (see [`Sms::rate`]).
    fn take_rate(&self, account_id: &str, per_minute: u32, now: i64) -> Option<i64> {
        let mut sent = self.inner.sent.lock().unwrap_or_else(|e| e.into_inner());
        let window = sent.entry(account_id.to_string()).or_default();
        while window.front().is_some_and(|t| *t <= now - MINUTE_MS) {
            window.pop_front();
        }
        if window.len() >= per_minute as usize {
            return window.front().map(|t| t + MINUTE_MS);
        }
        window.push_back(now);
        None
    }

    /// Publishes `sms.status` for `message` as it now stands.
    pub fn status_event(&self, message: &Message) {
        self.inner.events.publish(
            "sms.status",
            &message.account_id,
            json!({
                "id": message.id,
                "sid": message.provider_sid,
                "status": message.status,
                "error_code": message.error_code,
                "error_message": message.error_message,
                "to": message.to,
                "from": message.from,
            }),
        );
    }
}

/// The agent's `send_sms` during a call goes through the same outbox as every SMS.
impl crate::agent::session::TextSender for Sms {
    fn send_text(
        &self,
        text: crate::agent::session::AgentText,
    ) -> futures_util::future::BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let request = SendRequest {
                account_id: text.account_id,
                from: text.from,
                to: text.to,
                body: text.body,
                source: Source::Agent,
                idempotency_key: Some(text.idempotency_key),
            };
            self.send(&request)
                .await
                .map(|r| r.message.segments)
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sms() -> (Sms, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let config = SmsConfig {
            twilio_account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            twilio_auth_token: "token".into(),
            ..SmsConfig::default()
        };
        let sms = Sms::new(
            store,
            &config,
            reqwest::Client::new(),
            EventBus::default(),
            None,
        );
        (sms, dir)
    }

    #[tokio::test]
    async fn the_rate_counts_the_last_minute_per_account() {
        let (sms, _dir) = sms().await;
        let t = 1_000_000;
        assert_eq!(sms.take_rate("a", 2, t), None);
        assert_eq!(sms.take_rate("a", 2, t + 10), None);
        assert_eq!(sms.take_rate("a", 2, t + 20), Some(t + MINUTE_MS), "full");
        assert_eq!(sms.take_rate("b", 2, t + 20), None, "another account's own");
        assert_eq!(
            sms.take_rate("a", 2, t + MINUTE_MS),
            None,
            "the first left the window"
        );
        assert_eq!(
            sms.take_rate("a", 2, t + MINUTE_MS + 1),
            Some(t + 10 + MINUTE_MS)
        );
    }

    #[tokio::test]
    async fn sends_are_checked_before_they_are_queued() {
        let (sms, _dir) = sms().await;
        let store = &sms.inner.store;
        let account = store.create_account("Bakery").await.unwrap().id;
        let req = |to: &str, body: &str, from: Option<&str>| SendRequest {
            account_id: account.clone(),
            from: from.map(str::to_string),
            to: to.into(),
            body: body.into(),
            source: Source::Api,
            idempotency_key: None,
        };
        let field_of = |r: Result<Recorded, SmsError>| match r {
            Err(SmsError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field_of(sms.send(&req("12", "Hi", None)).await), "to");
        assert_eq!(field_of(sms.send(&req("+12", "Hi", None)).await), "to");
        assert_eq!(
            field_of(sms.send(&req("+15550100999", " ", None)).await),
            "body"
        );
        let long = "x".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(
            field_of(sms.send(&req("+15550100999", &long, None)).await),
            "body"
        );
        assert_eq!(
            field_of(sms.send(&req("+15550100999", "Hi", None)).await),
            "from",
            "no number"
        );
        store
            .create_number(&account, "+15550100200", None)
            .await
            .unwrap();
        let other = Some("+15550100201");
        assert_eq!(
            field_of(sms.send(&req("+15550100999", "Hi", other)).await),
            "from"
        );
        let queued = sms
            .send(&req("+1 555 010 0999", "Olá ☺", None))
            .await
            .unwrap();
        assert_eq!(queued.message.from, "+15550100200");
        assert_eq!(queued.message.to, "+15550100999");
        assert_eq!(queued.message.encoding, "UCS-2");
        assert_eq!(queued.message.status, "pending");
    }
}
