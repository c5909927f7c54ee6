//! Twilio's webhooks as the SMS channel takes them: a message received and an outbound
//! message's delivery status. The HTTP side (`POST /webhooks/twilio/sms` and
//! `/webhooks/twilio/status`, `api::twilio`) hands over what Twilio sent; nothing here knows
//! HTTP.
//!
//! Both are checked against Twilio's signature before anything is read or stored. An
//! incoming message is stored (its complete payload) and put on the contact's timeline; the
//! agent's reply is made afterwards and sent through the REST API. Twilio gives a webhook 15
//! seconds, and an LLM reply (with tools) can take longer; a REST send can also be retried
//! and tracked, which a TwiML reply cannot. A replayed webhook (same `MessageSid`) finds the
//! stored message, and nothing new is made or sent.

use serde_json::{Map, Value};

use super::segments;
use super::signature;
use crate::channels::Channels;
use crate::store::accounts::OPERATOR_ACCOUNT;
use crate::store::directory::e164;
use crate::store::messages::{status_rank, Inbound};
use crate::store::StoreError;

/// The form parameters of a Twilio webhook, in order.
type Params = Vec<(String, String)>;

/// A webhook's parameters whose signature checked out. Only [`Channels::twilio_params`] makes
/// one, so the handlers below cannot be given parameters nobody verified.
pub struct Verified(Params);

/// A webhook as Twilio sent it, for its signature check.
pub struct Signed<'a> {
    /// The `Host` the request was sent to, if it said.
    pub host: Option<&'a str>,
    /// The request's path and query, as received.
    pub path_and_query: &'a str,
    /// The form-encoded body.
    pub body: &'a [u8],
    /// Twilio's signature (`X-Twilio-Signature`); empty when missing.
    pub signature: &'a str,
}

/// Why a webhook was not taken.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("SMS is not configured (sms.twilio_account_sid, sms.twilio_auth_token)")]
    NotConfigured,
    #[error("X-Twilio-Signature is missing or does not match this request")]
    BadSignature,
    /// A parameter missing or wrong: its name, and why.
    #[error("{0}: {1}")]
    Param(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Channels {
    /// The webhook's parameters, once its signature checks out.
    pub fn twilio_params(&self, request: &Signed<'_>) -> Result<Verified, WebhookError> {
        let sms = self.sms.config();
        if !self.sms.enabled() {
            return Err(WebhookError::NotConfigured);
        }
        let params: Params = form_urlencoded::parse(request.body).into_owned().collect();
        let url = signed_url(&sms.public_url, request.host, request.path_and_query);
        let given = request.signature;
        if given.is_empty() || !signature::valid(&sms.twilio_auth_token, &url, &params, given) {
            tracing::warn!(%url, signed = !given.is_empty(), "Twilio webhook with a bad or missing signature refused");
            return Err(WebhookError::BadSignature);
        }
        Ok(Verified(params))
    }

    /// A message received: stored and put on the contact's timeline; the agent replies by
    /// REST, later. A replayed message (stored before) changes nothing.
    pub async fn sms_received(&self, verified: &Verified) -> Result<(), WebhookError> {
        let params = &verified.0;
        let sid = required(params, "MessageSid")?;
        let from_raw = required(params, "From")?;
        let to_raw = required(params, "To")?;
        let text = param(params, "Body").unwrap_or_default();
        // Short codes and alphanumeric senders are not E.164: they are kept as sent.
        let from = e164(from_raw).unwrap_or_else(|| from_raw.trim().to_string());
        let to = e164(to_raw).unwrap_or_else(|| to_raw.trim().to_string());
        let owner = match self
            .store
            .owner(crate::store::directory::Owned::Number, &to)
            .await
        {
            Ok(account) => Some(account),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let counted = segments::count(text);
        let segments = param(params, "NumSegments")
            .and_then(|n| n.parse().ok())
            .unwrap_or(i64::from(counted.count));
        let raw = raw_payload(params);
        // A message to a number no account has is kept on the operator's account (nothing
        // received is lost), unanswered.
        let account_id = owner
            .clone()
            .unwrap_or_else(|| OPERATOR_ACCOUNT.to_string());
        let recorded = self
            .store
            .record_inbound(&Inbound {
                account_id: &account_id,
                from: &from,
                to: &to,
                body: text,
                sid,
                raw: &raw,
                segments,
                encoding: counted.encoding.as_str(),
            })
            .await?;
        if !recorded.created {
            tracing::info!(sid, message = %recorded.message.id, "Twilio webhook replayed; already stored");
            return Ok(());
        }
        tracing::info!(sid, message = %recorded.message.id, account = %account_id, "SMS received");
        self.events.publish(
            "sms.received",
            &account_id,
            serde_json::json!({
                "id": recorded.message.id,
                "sid": sid,
                "from": from,
                "to": to,
                "body": text,
                "contact_id": recorded.contact.id,
            }),
        );
        if owner.is_none() {
            tracing::warn!(%to, "SMS to a number no account has; stored on the operator's account, not answered");
            let _ = self.store.message_handled(&recorded.message.id).await;
        } else if self.sms.config().reply {
            let channels = self.clone();
            tokio::spawn(async move {
                channels
                    .answer_sms(recorded.message, recorded.contact)
                    .await
            });
        } else {
            let _ = self.store.message_handled(&recorded.message.id).await;
        }
        Ok(())
    }

    /// A delivery status: applied when it moves the message forward, kept in any case.
    pub async fn sms_status(&self, verified: &Verified) -> Result<(), WebhookError> {
        let params = &verified.0;
        let sid = required(params, "MessageSid")?;
        let status = required(params, "MessageStatus")?;
        if status_rank(status).is_none() {
            return Err(WebhookError::Param(
                "MessageStatus",
                format!("{status:?} is not a message status"),
            ));
        }
        let code = param(params, "ErrorCode").and_then(|c| c.trim().parse::<i64>().ok());
        let why = param(params, "ErrorMessage");
        let raw = raw_payload(params);
        match self
            .store
            .apply_status(sid, status, code, why, &raw)
            .await?
        {
            Some((message, true)) => {
                tracing::info!(sid, status, message = %message.id, "SMS status");
                self.sms.status_event(&message);
            }
            Some((message, false)) => {
                tracing::info!(sid, status, now = %message.status, "SMS status older than the one recorded; kept, not applied");
            }
            None => tracing::info!(
                sid,
                status,
                "SMS status for a message not recorded yet; kept"
            ),
        }
        Ok(())
    }
}

/// The URL Twilio requested, as it signed it: the configured public URL, else the Host
/// header's, with the path and query as received.
fn signed_url(configured: &str, host: Option<&str>, path_and_query: &str) -> String {
    if !configured.is_empty() {
        return format!("{configured}{path_and_query}");
    }
    let host = host.unwrap_or("localhost");
    format!("http://{host}{path_and_query}")
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, WebhookError> {
    param(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| WebhookError::Param(name, "missing from Twilio's parameters".into()))
}

/// Every parameter as a JSON object (a repeated name keeps its values as an array).
fn raw_payload(params: &Params) -> Value {
    let mut map = Map::new();
    for (k, v) in params {
        match map.get_mut(k) {
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Some(Value::Array(items)) => items.push(Value::String(v.clone())),
            Some(first) => {
                let first = first.take();
                map.insert(
                    k.clone(),
                    Value::Array(vec![first, Value::String(v.clone())]),
                );
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_is_the_public_one_when_configured() {
        let path = "/webhooks/twilio/sms?x=1";
        assert_eq!(
            signed_url("https://voice.example.com", Some("10.0.0.5:8080"), path),
            "https://voice.example.com/webhooks/twilio/sms?x=1"
        );
        assert_eq!(
            signed_url("", Some("10.0.0.5:8080"), path),
            "http://10.0.0.5:8080/webhooks/twilio/sms?x=1"
        );
        assert_eq!(
            signed_url("", None, path),
            "http://localhost/webhooks/twilio/sms?x=1"
        );
    }

    #[test]
    fn the_raw_payload_keeps_every_parameter() {
        let params: Params = vec![
            ("Body".into(), "hi".into()),
            ("MediaUrl".into(), "a".into()),
            ("MediaUrl".into(), "b".into()),
        ];
        assert_eq!(
            raw_payload(&params),
            serde_json::json!({"Body": "hi", "MediaUrl": ["a", "b"]})
        );
    }
}
