//! Per-contact conversation memory shared by every channel: each call, SMS and web chat
//! line goes on the contact's timeline (store::contacts), and a new conversation starts
//! with the recent part of it in the agent's context, with the language the contact uses.

pub mod context;
pub mod language;
pub mod summary;

use serde_json::{json, Value};

use crate::config::text::MemoryConfig;
use crate::providers::llm::Llm;
use crate::store::contacts::{Channel, Contact, NewEntry, Role};
use crate::store::{now_ms, Store, StoreError};

/// Entries read to build a context: far more than a budget of a few thousand characters
/// holds, so the budget decides.
const READ_ENTRIES: i64 = 200;
/// A confidence this high or higher means a person set the language: detection keeps off.
const SET_BY_A_PERSON: f64 = 1.0;
/// Below this, a detection is not taken even as a first guess (one cue word such as "sim"
/// or "gracias" scores about 0.4 to 0.58; a word two languages share, such as "no", near 0).
const FIRST_GUESS: f32 = 0.35;

/// What the agent knows of a contact as a conversation starts.
#[derive(Debug, Clone)]
pub struct Recall {
    pub contact: Contact,
    /// The context block (empty: nothing recent).
    pub context: String,
}

#[derive(Clone)]
pub struct Memory {
    store: Store,
    config: MemoryConfig,
}

impl Memory {
    pub fn new(store: Store, config: MemoryConfig) -> Memory {
        Memory { store, config }
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// The recent timeline of `contact` as context, leaving out the entries of `exclude`
    /// (the message being answered, already on the timeline).
    pub async fn recall(
        &self,
        contact: &Contact,
        exclude: Option<&str>,
    ) -> Result<String, StoreError> {
        if self.config.context_chars == 0 {
            return Ok(String::new());
        }
        let since = now_ms() - i64::from(self.config.max_age_days) * 86_400_000;
        let entries: Vec<_> = self
            .store
            .timeline(&contact.id, None, READ_ENTRIES)
            .await?
            .into_iter()
            .filter(|e| e.at >= since && (exclude.is_none() || e.ref_id.as_deref() != exclude))
            .collect();
        Ok(context::render(&entries, self.config.context_chars))
    }

    /// What the agent knows of the person at `address` as a call with them starts; None
    /// when the store cannot say (the call goes on without memory).
    pub async fn for_call(&self, account_id: &str, address: &str) -> Option<Recall> {
        let found = async {
            let contact = self.store.contact_for(account_id, address).await?;
            let context = self.recall(&contact, None).await?;
            Ok::<_, StoreError>(Recall { contact, context })
        }
        .await;
        match found {
            Ok(recall) => Some(recall),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the caller's memory; the call goes on without it");
                None
            }
        }
    }

    /// Updates the contact's language from `text` they wrote or said, and returns the
    /// language to answer them in (None: unknown, the agent's own).
    pub async fn learn_language(&self, contact: &mut Contact, text: &str) -> Option<String> {
        let stored = contact.language.clone();
        let Some(found) = language::detect(text) else {
            return stored;
        };
        let code = found.language.code();
        let confidence = f64::from(found.confidence);
        let replace = match (&stored, contact.language_confidence) {
            (Some(_), Some(c)) if c >= SET_BY_A_PERSON => false,
            (Some(lang), _) if lang == code => false,
            (Some(_), _) => found.confidence >= language::CONFIDENT,
            (None, _) => found.confidence >= FIRST_GUESS,
        };
        if !replace {
            return stored;
        }
        match self
            .store
            .set_contact_language(&contact.id, Some(code), Some(confidence))
            .await
        {
            Ok(()) => {
                tracing::info!(contact = %contact.id, language = code, confidence, "contact's language");
                contact.language = Some(code.to_string());
                contact.language_confidence = Some(confidence);
            }
            Err(e) => tracing::warn!(error = %e, "cannot store the contact's language"),
        }
        contact.language.clone()
    }

    /// Writes a finished call onto the timeline of the person at `address`: its summary,
    /// with the transcript kept beside it; and learns their language from what they said.
    pub async fn remember_call(
        &self,
        account_id: &str,
        address: &str,
        cdr_id: &str,
        transcript: &Value,
        duration_s: i64,
        llm: Option<&Llm>,
    ) {
        let llm = llm.filter(|_| self.config.llm_summary);
        let Some(summary) = summary::summarize(llm, transcript, duration_s).await else {
            return;
        };
        let done = async {
            let mut contact = self.store.contact_for(account_id, address).await?;
            // The language first: once the call is on the timeline, all it taught is stored.
            let said = caller_lines(transcript);
            if !said.is_empty() {
                self.learn_language(&mut contact, &said).await;
            }
            let detail = json!({"transcript": transcript, "duration_s": duration_s});
            let entry = NewEntry {
                channel: Channel::Voice,
                role: Role::Summary,
                text: &summary,
                ref_id: Some(cdr_id),
                detail: Some(&detail),
            };
            self.store
                .append_timeline(account_id, &contact.id, &entry)
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, call = cdr_id, "cannot write the call to the caller's timeline");
        }
    }
}

/// What the caller said in a call, as one text.
fn caller_lines(transcript: &Value) -> String {
    transcript
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter(|l| l["role"] == "caller")
                .filter_map(|l| l["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn memory() -> (Memory, Contact, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let account = store.create_account("Bakery").await.unwrap();
        let contact = store
            .contact_for(&account.id, "+15550100999")
            .await
            .unwrap();
        (Memory::new(store, MemoryConfig::default()), contact, dir)
    }

    #[tokio::test]
    async fn a_language_is_guessed_from_a_cue_word_and_replaced_only_on_clear_evidence() {
        let (memory, mut c, _dir) = memory().await;
        assert_eq!(
            memory.learn_language(&mut c, "no").await,
            None,
            "shared word"
        );
        assert_eq!(
            memory.learn_language(&mut c, "sim").await.as_deref(),
            Some("pt")
        );
        assert_eq!(
            memory.learn_language(&mut c, "gracias").await.as_deref(),
            Some("pt"),
            "one word does not overturn a stored language"
        );
        let es = "Quiero cambiar mi cita para mañana por la tarde";
        assert_eq!(
            memory.learn_language(&mut c, es).await.as_deref(),
            Some("es")
        );
        let stored = memory.store.contact(&c.account_id, &c.id).await.unwrap();
        assert_eq!(stored.language.as_deref(), Some("es"));
        // A language a person set stays.
        memory
            .store
            .set_contact_language(&c.id, Some("en"), Some(1.0))
            .await
            .unwrap();
        let mut c = memory.store.contact(&c.account_id, &c.id).await.unwrap();
        assert_eq!(
            memory.learn_language(&mut c, es).await.as_deref(),
            Some("en")
        );
    }

    #[tokio::test]
    async fn recall_leaves_out_the_message_answered_and_keeps_to_the_budget() {
        let (mut memory, c, _dir) = memory().await;
        let add = |text: &'static str, ref_id: &'static str| NewEntry {
            channel: Channel::Sms,
            role: Role::Contact,
            text,
            ref_id: Some(ref_id),
            detail: None,
        };
        memory
            .store
            .append_timeline(&c.account_id, &c.id, &add("Do you deliver?", "msg_1"))
            .await
            .unwrap();
        memory
            .store
            .append_timeline(&c.account_id, &c.id, &add("To Elm St?", "msg_2"))
            .await
            .unwrap();
        let context = memory.recall(&c, Some("msg_2")).await.unwrap();
        assert!(context.contains("Do you deliver?"), "{context}");
        assert!(!context.contains("Elm St"), "{context}");
        memory.config.context_chars = 0;
        assert_eq!(memory.recall(&c, None).await.unwrap(), "");
    }
}
