//! The shapes of the API's answers, for the OpenAPI document. The handlers answer with the
//! store's own types as serde writes them (`store::` knows nothing of HTTP or OpenAPI), so
//! these mirror them field for field; tests/api_openapi.rs checks real answers against these
//! schemas (and the tests below the ones it cannot provoke without a call), so a field added
//! to a store type and not here fails a test.
//!
//! Times are RFC 3339 strings (`2026-12-03T10:00:00.000Z`); money is in micro-units.

use serde_json::Value;
use utoipa::ToSchema;

/// An account.
#[derive(ToSchema)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// The operator's account: its admin keys manage every account.
    pub operator: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Calls it may have in progress at once, on all nodes; null: no limit.
    #[schema(required = true)]
    pub max_concurrent_calls: Option<i64>,
}

#[derive(ToSchema)]
pub struct AccountList {
    pub data: Vec<Account>,
}

/// What a key may do; each scope includes the ones before it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

/// An API key as listed (never the secret).
#[derive(ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub scope: Scope,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub revoked_at: Option<String>,
}

/// A new key, with the key itself: shown this once only.
#[derive(ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub listed: ApiKey,
    /// `pk_<id>_<secret>`: send it as `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
}

/// An agent's conversation settings, as stored (only those that were set).
#[derive(ToSchema)]
pub struct AgentSettings {
    /// The system prompt.
    pub prompt: Option<String>,
    /// What the agent says first.
    pub greeting: Option<String>,
    /// `auto` or a language code such as `en` or `es`.
    pub language: Option<String>,
    pub voice: Option<String>,
    /// The longest a call may last, in seconds (0: no limit).
    pub max_duration_s: Option<i64>,
}

/// An agent: the settings of the conversations it answers.
#[derive(ToSchema)]
pub struct Agent {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub config: AgentSettings,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(ToSchema)]
pub struct AgentList {
    pub data: Vec<Agent>,
}

/// A phone number (DID) of an account, answered by one of its agents.
#[derive(ToSchema)]
pub struct Number {
    /// E.164, e.g. `+15551234567`.
    pub number: String,
    pub account_id: String,
    /// None: the configured default agent answers.
    #[schema(required = true)]
    pub agent_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
pub struct NumberList {
    pub data: Vec<Number>,
}

/// A call in progress on this node.
#[derive(ToSchema)]
pub struct LiveCall {
    /// The id its call record will have in `/v1/cdrs`.
    pub id: String,
    /// The SIP Call-ID.
    pub call_id: String,
    pub account_id: String,
    #[schema(required = true)]
    pub agent_id: Option<String>,
    #[schema(required = true)]
    pub number: Option<String>,
    pub from_uri: String,
    pub to_uri: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `ringing` (routed, not answered yet) or `answered`.
    pub state: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime, required = true)]
    pub answered_at: Option<String>,
}

#[derive(ToSchema)]
pub struct LiveCallList {
    pub data: Vec<LiveCall>,
}

/// A call detail record.
#[derive(ToSchema)]
pub struct Cdr {
    pub id: String,
    pub account_id: String,
    #[schema(required = true)]
    pub agent_id: Option<String>,
    /// The SIP Call-ID.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `sip`.
    pub channel: String,
    pub from_uri: String,
    pub to_uri: String,
    /// The configured number the call reached, E.164.
    #[schema(required = true)]
    pub number: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime, required = true)]
    pub answered_at: Option<String>,
    #[schema(format = DateTime)]
    pub ended_at: String,
    /// Answer to end, in ms (0 when not answered).
    pub duration_ms: i64,
    pub billable_seconds: i64,
    /// Micro-units.
    pub cost: i64,
    /// Why it ended: `remote_bye`; when Parley ended it, why (`agent`, `api`, `drain`, `credit`, `max_duration`, `media_timeout`, `lease_closed`, `transferred`; `local_bye` otherwise); `cancelled`, `ack_timeout`, `rejected`, ….
    pub hangup_cause: String,
    /// Who ended it: `caller`, `parley` or `none` (refused).
    pub hangup_side: String,
    /// The final SIP status of the INVITE (200 when answered).
    pub final_code: i64,
    #[schema(required = true)]
    pub codec: Option<String>,
    pub packets_lost: i64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// E-model MOS estimate of what Parley received.
    #[schema(required = true)]
    pub mos: Option<f64>,
    /// Each turn's latency stages, in ms.
    pub turns: Vec<Value>,
    /// What was said, in order: `[{"role": "caller"|"agent", "text": …}]`.
    pub transcript: Vec<Value>,
    /// Where the caller's audio was recorded, when it was.
    #[schema(required = true)]
    pub recording: Option<String>,
    /// The configured trunk the call came in or went out through, by name.
    #[schema(required = true)]
    pub trunk: Option<String>,
    /// The Parley node that held the call: its `redis.node_id`, else its host's name (null
    /// on records written before nodes were named).
    #[schema(required = true)]
    pub node: Option<String>,
}

/// A page of call records, newest first.
#[derive(ToSchema)]
pub struct CdrPage {
    pub data: Vec<Cdr>,
    /// Pass as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// An account's rate plan.
#[derive(ToSchema)]
pub struct Plan {
    /// Micro-units per minute of call.
    pub rate_per_minute: i64,
    /// Usage is billed in whole increments of this many seconds (1, 6, 60 …).
    pub increment_s: i64,
    /// Free seconds each month (reset a calendar month after the plan was set).
    pub free_seconds: i64,
    /// How far below zero the balance may go (micro-units).
    pub overdraft: i64,
}

/// An account's money.
#[derive(ToSchema)]
pub struct Balance {
    pub account_id: String,
    /// Settled money (micro-units): top-ups less what calls cost.
    pub balance: i64,
    /// Held by open leases.
    pub reserved: i64,
    /// What new grants can still take: balance - reserved + overdraft.
    pub available: i64,
    pub plan: Plan,
    pub free_seconds_left: i64,
    #[schema(format = DateTime)]
    pub free_resets_at: String,
    /// What calls used beyond their grants (`billing.final_unit_action = "allow"`) and no
    /// top-up has paid yet; top-ups pay it first.
    pub debt: i64,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LeaseState {
    Open,
    Released,
    Expired,
}

/// A billing lease: money held for a call while it runs.
#[derive(ToSchema)]
pub struct Lease {
    pub id: String,
    pub account_id: String,
    #[schema(required = true)]
    pub call_id: Option<String>,
    pub state: LeaseState,
    /// Seconds granted in all.
    pub granted_seconds: i64,
    /// The usage last reported.
    pub used_seconds: i64,
    /// Money held for the seconds granted and not yet settled.
    pub held: i64,
    pub free_seconds_held: i64,
    /// What the call cost, once settled.
    pub cost: i64,
    pub free_seconds_charged: i64,
    /// Seconds the call went on beyond its grant, and their price: owed, not settled.
    pub debt_seconds: i64,
    pub debt: i64,
    /// The last grant was cut short: end the call when it is used.
    pub final_unit_indication: bool,
    /// The plan's price when the lease was made: the call is billed at it throughout.
    pub rate_per_minute: i64,
    pub increment_s: i64,
    pub validity_seconds: i64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The answer to a reserve or a renewal: the lease and what this request granted.
#[derive(ToSchema)]
pub struct Grant {
    #[serde(flatten)]
    pub lease: Lease,
    /// Seconds this request granted (on top of what was granted before).
    pub granted_now: i64,
    /// `terminate`: the grant was cut short, end the call when it is used; else `none`.
    pub final_unit_action: String,
}

/// A webhook subscription.
#[derive(ToSchema)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// Event types delivered (`*` for all).
    pub events: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A new subscription, with its signing secret: shown this once only.
#[derive(ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC-SHA256 key of the `Parley-Signature` header.
    pub secret: String,
}

#[derive(ToSchema)]
pub struct WebhookList {
    pub data: Vec<Webhook>,
}

/// One event's delivery to a webhook.
#[derive(ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    /// The HTTP status of the last attempt.
    #[schema(required = true)]
    pub last_status: Option<i64>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub delivered_at: Option<String>,
}

#[derive(ToSchema)]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
}

/// One event, as `/v1/events` sends it in an SSE `data:` line and webhooks POST it.
#[derive(ToSchema)]
pub struct Event {
    /// Increasing within a process run (the SSE `id`).
    pub seq: i64,
    /// `call.started`, `call.answered`, `call.ended`, `turn.completed`, `lease.final_units`,
    /// `sms.received`, `sms.status`, `chat.message`.
    #[schema(rename = "type")]
    pub kind: String,
    pub account_id: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub data: Value,
}

/// A text message (SMS), sent or received.
#[derive(ToSchema)]
pub struct Message {
    /// `msg_…`
    pub id: String,
    pub account_id: String,
    /// The person at the other end (`/v1/contacts`).
    #[schema(required = true)]
    pub contact_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Who made it: `twilio` (received), `api`, `bulk`, `agent` (the AI agent's reply).
    pub source: String,
    /// E.164 (a received message's sender may be a short code, kept as sent).
    pub from: String,
    pub to: String,
    pub body: String,
    /// `scheduled` (held for the account's business hours), `pending` (in Parley's outbox),
    /// then Twilio's: `accepted`, `queued`, `sending`, `sent`, `delivered`, `undelivered`,
    /// `failed`, `read`; received: `received`.
    pub status: String,
    /// Twilio's error code when it refused or could not deliver it (e.g. 21211).
    #[schema(required = true)]
    pub error_code: Option<i64>,
    #[schema(required = true)]
    pub error_message: Option<String>,
    /// Twilio's `MessageSid`, once it has one.
    #[schema(required = true)]
    pub provider_sid: Option<String>,
    /// SMS parts it takes (160 GSM-7 characters, or 70 UCS-2, each; fewer when split).
    pub segments: i64,
    /// `GSM-7` or `UCS-2` (any character outside GSM-7, such as an emoji).
    pub encoding: String,
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    /// Send attempts made so far (Twilio's 5xx, 429 and network failures are retried).
    pub attempts: i64,
    /// Not sent before this time (business hours, the account's rate).
    #[schema(format = DateTime, required = true)]
    pub send_after: Option<String>,
    /// Twilio's webhook parameters, as received (received messages only).
    #[schema(value_type = Option<Object>, required = true)]
    pub raw: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A page of messages, newest first.
#[derive(ToSchema)]
pub struct MessagePage {
    pub data: Vec<Message>,
    /// Pass as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A delivery-status callback Twilio made for a message.
#[derive(ToSchema)]
pub struct MessageEvent {
    /// The status it reported.
    pub status: String,
    /// False when it arrived after a later status and was kept without moving the status back.
    pub applied: bool,
    /// Its parameters, as received.
    #[schema(value_type = Object)]
    pub raw: Value,
}

/// A message with its delivery-status callbacks.
#[derive(ToSchema)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: Message,
    /// In arrival order.
    pub events: Vec<MessageEvent>,
}

/// One recipient of a bulk send: its message (`id`, `status`), or why it has none (`error`).
#[derive(ToSchema)]
pub struct BulkOutcome {
    /// The number as the request gave it.
    pub to: String,
    pub id: Option<String>,
    pub status: Option<String>,
    /// `field` names the request's field at fault, e.g. `to[3]` or `messages[3].body`.
    pub error: Option<super::error::ErrorDetail>,
}

/// What a bulk send did, recipient by recipient in the request's order.
#[derive(ToSchema)]
pub struct BulkResult {
    pub data: Vec<BulkOutcome>,
    /// Recipients with a message in the outbox.
    pub queued: i64,
    /// Recipients refused.
    pub failed: i64,
}

/// How a contact is reached.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ContactKind {
    /// A phone number: calls and SMS.
    Phone,
    /// A web chat visitor.
    Web,
}

/// A language the agent answers in.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LanguageCode {
    En,
    Es,
    Pt,
}

/// Someone an account talks to, on any channel.
#[derive(ToSchema)]
pub struct Contact {
    /// `ctc_…`
    pub id: String,
    pub account_id: String,
    /// An E.164 number, or `web:<the business's id for a web visitor>`.
    pub address: String,
    pub kind: ContactKind,
    /// The language they write and speak (`en`, `es`, `pt`), once known.
    #[schema(required = true)]
    pub language: Option<String>,
    /// How sure the detection that set `language` was, 0 to 1; 1: a person set it.
    #[schema(required = true)]
    pub language_confidence: Option<f64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The last time anything happened with them.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A page of contacts, the most recently active first.
#[derive(ToSchema)]
pub struct ContactPage {
    pub data: Vec<Contact>,
    /// Pass as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Where a timeline entry happened.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TimelineChannel {
    Voice,
    Sms,
    Chat,
}

/// Who a timeline entry is from.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TimelineRole {
    /// The person (caller, texter, visitor).
    Contact,
    /// The AI agent, or the business through the API.
    Agent,
    /// A record about a conversation (a call's summary).
    Summary,
}

/// One thing said or done with a contact.
#[derive(ToSchema)]
pub struct TimelineEntry {
    pub id: i64,
    pub contact_id: String,
    pub channel: TimelineChannel,
    pub role: TimelineRole,
    pub text: String,
    /// The message (`msg_…`) or call record (`cdr_…`) it comes from.
    #[schema(required = true)]
    pub ref_id: Option<String>,
    /// More about it: a call's `{"transcript": [...], "duration_s": …}`.
    #[schema(value_type = Option<Object>, required = true)]
    pub detail: Option<Value>,
    #[schema(format = DateTime)]
    pub at: String,
}

/// A page of a contact's timeline, newest first.
#[derive(ToSchema)]
pub struct TimelinePage {
    pub data: Vec<TimelineEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A web chat token, shown this once (only its hash is kept).
#[derive(ToSchema)]
pub struct ChatToken {
    /// `pct_…`
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The visitor's contact (`ctc_…`).
    pub contact_id: String,
    /// Where the page opens the chat, as a WebSocket on this server: `/v1/chat?token=…`.
    pub url: String,
}

/// A browser call token, shown this once (only its hash is kept).
#[derive(ToSchema)]
pub struct CallToken {
    /// `pwt_…`: the bearer of `POST /v1/webrtc/whip` and `DELETE /v1/webrtc/whip/{id}`.
    pub token: String,
    /// Until when it may start calls.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The visitor's contact (`ctc_…`).
    pub contact_id: String,
    /// The call page with the token, on the host the request was sent to:
    /// `https://<host>/call?token=…` (`https` when the request came through a proxy that
    /// says `X-Forwarded-Proto: https`).
    pub url: String,
}

/// One day's open hours: `[["09:00", "12:00"], ["13:00", "18:00"]]`, each interval from
/// its start (included) to its end (excluded, `24:00` allowed), not overlapping.
type Day = Option<Vec<Vec<String>>>;

/// Weekly open hours; a day left out is closed.
#[derive(ToSchema)]
pub struct Weekly {
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub mon: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub tue: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub wed: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub thu: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub fri: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub sat: Day,
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub sun: Day,
}

/// When an account's SMS may go out, in wall-clock time of its own zone (daylight-saving
/// changes included).
#[derive(ToSchema)]
#[schema(example = json!({"timezone": "America/Sao_Paulo", "weekly": {"mon": [["09:00", "18:00"]], "sat": [["10:00", "14:00"]]}}))]
pub struct BusinessHours {
    /// An IANA time zone, e.g. `America/New_York`.
    pub timezone: String,
    pub weekly: Weekly,
}

/// An account's messaging settings.
#[derive(ToSchema)]
pub struct MessagingSettings {
    /// Null: messages go at any time.
    #[schema(required = true)]
    pub business_hours: Option<BusinessHours>,
    /// SMS per minute; null: the server's `sms.per_minute`.
    #[schema(required = true)]
    pub sms_per_minute: Option<i64>,
}

#[cfg(test)]
mod tests {
    //! The answers tests/api_openapi.rs cannot provoke without a call (records, live calls,
    //! deliveries, events) are checked here: the store's value, as serde writes it, has the
    //! schema's fields and no others.

    use serde_json::{json, Value};
    use utoipa::PartialSchema;

    fn fields_of<S: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(S::schema()).unwrap();
        let mut fields: Vec<String> = schema["properties"]
            .as_object()
            .expect("an object schema")
            .keys()
            .cloned()
            .collect();
        fields.sort();
        fields
    }

    fn fields(value: impl serde::Serialize) -> Vec<String> {
        let Value::Object(map) = serde_json::to_value(value).unwrap() else {
            panic!("not an object");
        };
        let mut fields: Vec<String> = map.keys().cloned().collect();
        fields.sort();
        fields
    }

    #[test]
    fn records_live_calls_deliveries_and_events_match_their_schemas() {
        let cdr = crate::store::cdr::Cdr {
            id: "cdr_1".into(),
            account_id: "acc_1".into(),
            agent_id: None,
            call_id: "c1".into(),
            direction: "inbound".into(),
            channel: "sip".into(),
            from_uri: "sip:a@b".into(),
            to_uri: "sip:c@d".into(),
            number: None,
            started_at: 0,
            answered_at: None,
            ended_at: 0,
            duration_ms: 0,
            billable_seconds: 0,
            cost: 0,
            hangup_cause: "remote_bye".into(),
            hangup_side: "caller".into(),
            final_code: 200,
            codec: None,
            packets_lost: 0,
            loss_percent: 0.0,
            jitter_ms: 0.0,
            mos: None,
            turns: json!([]),
            transcript: json!([]),
            recording: None,
            trunk: None,
            node: Some("media-1".into()),
        };
        assert_eq!(fields(&cdr), fields_of::<super::Cdr>());
        let call = crate::call::registry::LiveCall {
            id: "cdr_1".into(),
            call_id: "c1".into(),
            account_id: "acc_1".into(),
            agent_id: None,
            number: None,
            from_uri: "sip:a@b".into(),
            to_uri: "sip:c@d".into(),
            direction: "inbound".into(),
            state: "ringing".into(),
            started_at: 0,
            answered_at: None,
        };
        assert_eq!(fields(&call), fields_of::<super::LiveCall>());
        let delivery = crate::store::webhooks::Delivery {
            id: 1,
            webhook_id: "wh_1".into(),
            event_type: "call.ended".into(),
            state: "pending".into(),
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at: 0,
            created_at: 0,
            delivered_at: None,
        };
        assert_eq!(fields(&delivery), fields_of::<super::Delivery>());
        let event = crate::events::BusEvent {
            seq: 1,
            kind: "call.ended",
            account_id: "acc_1".into(),
            at: 0,
            data: json!({}),
        };
        assert_eq!(fields(&event), fields_of::<super::Event>());
    }

    #[test]
    fn messages_contacts_and_timeline_entries_match_their_schemas() {
        let message = crate::store::messages::Message {
            id: "msg_1".into(),
            account_id: "acc_1".into(),
            contact_id: None,
            direction: "outbound".into(),
            source: "api".into(),
            from: "+15551230001".into(),
            to: "+15551230002".into(),
            body: "hi".into(),
            status: "pending".into(),
            error_code: None,
            error_message: None,
            provider_sid: None,
            segments: 1,
            encoding: "GSM-7".into(),
            idempotency_key: None,
            attempts: 0,
            send_after: None,
            raw: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(fields(&message), fields_of::<super::Message>());
        let contact = crate::store::contacts::Contact {
            id: "ctc_1".into(),
            account_id: "acc_1".into(),
            address: "web:v1".into(),
            kind: crate::store::contacts::ContactKind::Web,
            language: None,
            language_confidence: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(fields(&contact), fields_of::<super::Contact>());
        let entry = crate::store::contacts::Entry {
            id: 1,
            contact_id: "ctc_1".into(),
            channel: crate::store::contacts::Channel::Voice,
            role: crate::store::contacts::Role::Summary,
            text: "called".into(),
            ref_id: None,
            detail: Some(json!({"transcript": [], "duration_s": 3})),
            at: 0,
        };
        assert_eq!(fields(&entry), fields_of::<super::TimelineEntry>());
        // The enums are written as the schemas list them.
        assert_eq!(json!(entry)["channel"], "voice");
        assert_eq!(json!(entry)["role"], "summary");
        assert_eq!(json!(contact)["kind"], "web");
    }
}
