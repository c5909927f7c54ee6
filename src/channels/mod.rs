//! Text channels: SMS over Twilio and web chat, answered by the same agent as calls, with
//! the same memory of each contact ([`crate::memory`]).

pub mod agents;
pub mod chat;
pub mod sms;

use std::sync::Arc;

use serde_json::json;

use crate::agent::text::{reply, TextTurn};
use crate::events::EventBus;
use crate::memory::Memory;
use crate::store::contacts::{Channel, Contact, NewEntry, Role};
use crate::store::messages::Message;
use crate::store::{now_ms, Store};
use sms::outbox::{SendRequest, Sms, Source};

/// Inbound messages left unanswered by a node that stopped are answered by the next to
/// start if they are at most this old (older ones would surprise their sender)...
const RESUME_WITHIN_MS: i64 = 3_600_000;
/// ...and at least this old (younger ones may still be in a running node's hands).
const RESUME_AFTER_MS: i64 = 120_000;

/// What the text channels share. Cloning shares it.
#[derive(Clone)]
pub struct Channels {
    pub store: Store,
    pub sms: Sms,
    pub memory: Memory,
    pub agents: Arc<agents::TextAgents>,
    pub events: EventBus,
}

impl Channels {
    /// Starts the SMS outbox, and answers what a stopped node left unanswered.
    pub fn start(&self) {
        self.sms.start();
        if !self.sms.enabled() || !self.sms.config().reply {
            return;
        }
        let channels = self.clone();
        tokio::spawn(async move {
            let now = now_ms();
            let left = match channels
                .store
                .unhandled_messages(now - RESUME_WITHIN_MS)
                .await
            {
                Ok(left) => left,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for unanswered SMS");
                    return;
                }
            };
            for message in left
                .into_iter()
                .filter(|m| m.created_at <= now - RESUME_AFTER_MS)
            {
                let Some(contact_id) = message.contact_id.clone() else {
                    continue;
                };
                match channels
                    .store
                    .contact(&message.account_id, &contact_id)
                    .await
                {
                    Ok(contact) => {
                        tracing::info!(message = %message.id, "answering an SMS a stopped node left");
                        channels.answer_sms(message, contact).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot answer a left SMS"),
                }
            }
        });
    }

    /// The agent's reply to an SMS just received, sent through the outbox. The reply's
    /// idempotency key is the message's id, so answering twice (a resumed node) sends once.
    pub async fn answer_sms(&self, message: Message, mut contact: Contact) {
        let language = self
            .memory
            .learn_language(&mut contact, &message.body)
            .await;
        let answered = async {
            let Some(rt) = self.agents.for_number(&message.to).await else {
                tracing::info!(to = %message.to, "no AI agent answers this number's SMS");
                return;
            };
            let context = match self.memory.recall(&contact, Some(&message.id)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the texter's memory; answering without it");
                    String::new()
                }
            };
            let turn = TextTurn {
                channel: Channel::Sms,
                context: &context,
                language: language.as_deref(),
                text: &message.body,
                reference: &message.id,
            };
            let Some(text) = reply(&rt, turn).await else {
                tracing::warn!(message = %message.id, "no reply to the SMS (the LLM failed)");
                return;
            };
            let request = SendRequest {
                account_id: message.account_id.clone(),
                from: Some(message.to.clone()),
                to: message.from.clone(),
                body: text,
                source: Source::Agent,
                idempotency_key: Some(format!("reply:{}", message.id)),
            };
            if let Err(e) = self.sms.send(&request).await {
                tracing::warn!(error = %e, message = %message.id, "cannot send the SMS reply");
            }
        };
        answered.await;
        if let Err(e) = self.store.message_handled(&message.id).await {
            tracing::warn!(error = %e, "cannot mark the SMS answered");
        }
    }

    /// The agent's reply to `text` from `contact` in a web chat (with `agent_id`'s settings,
    /// or the default agent's): both lines go on the timeline and the event bus.
    pub async fn answer_chat(
        &self,
        contact: &mut Contact,
        agent_id: Option<&str>,
        text: &str,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let account_id = contact.account_id.clone();
        let context = self.memory.recall(contact, None).await?;
        self.note_chat(contact, Role::Contact, text).await?;
        let language = self.memory.learn_language(contact, text).await;
        let Some(rt) = self.agents.for_agent(&account_id, agent_id).await else {
            return Ok(None);
        };
        let reference = format!("chat:{}", contact.id);
        let turn = TextTurn {
            channel: Channel::Chat,
            context: &context,
            language: language.as_deref(),
            text,
            reference: &reference,
        };
        let Some(answer) = reply(&rt, turn).await else {
            return Ok(None);
        };
        self.note_chat(contact, Role::Agent, &answer).await?;
        Ok(Some(answer))
    }

    async fn note_chat(
        &self,
        contact: &Contact,
        role: Role,
        text: &str,
    ) -> Result<(), crate::store::StoreError> {
        let entry = NewEntry {
            channel: Channel::Chat,
            role,
            text,
            ref_id: None,
            detail: None,
        };
        self.store
            .append_timeline(&contact.account_id, &contact.id, &entry)
            .await?;
        self.events.publish(
            "chat.message",
            &contact.account_id,
            json!({
                "contact_id": contact.id,
                "address": contact.address,
                "role": role.as_str(),
                "text": text,
            }),
        );
        Ok(())
    }
}
