//! Contacts and their timeline: the people an account talks to (an E.164 number, or the id a
//! business gives a web chat visitor) and everything said with them on every channel, in
//! order, so any channel's agent can recall the rest.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::clock::ser_time;
use super::{now_ms, random_id, Store, StoreError};

/// How a contact is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    /// An E.164 number: calls and SMS.
    Phone,
    /// A web chat visitor, named by the business (`web:<their id>`).
    Web,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Phone => "phone",
            ContactKind::Web => "web",
        }
    }

    /// The kind of `address`: web ids carry the `web:` prefix.
    pub fn of(address: &str) -> ContactKind {
        if address.starts_with(WEB_PREFIX) {
            ContactKind::Web
        } else {
            ContactKind::Phone
        }
    }
}

/// Web chat visitors' addresses start with this, so they never collide with numbers.
pub const WEB_PREFIX: &str = "web:";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub id: String,
    pub account_id: String,
    /// E.164 number or `web:<id>`.
    pub address: String,
    pub kind: ContactKind,
    /// The language they write and speak (`en`, `es`, `pt`), once known.
    pub language: Option<String>,
    /// How sure the detection that set `language` was (0 to 1; 1 when set through the API).
    pub language_confidence: Option<f64>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: i64,
}

/// Where a timeline entry happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Voice,
    Sms,
    Chat,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Sms => "sms",
            Channel::Chat => "chat",
        }
    }

    fn parse(s: &str) -> Channel {
        match s {
            "sms" => Channel::Sms,
            "chat" => Channel::Chat,
            _ => Channel::Voice,
        }
    }
}

/// Who an entry is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person (caller, texter, visitor).
    Contact,
    /// The AI agent, or the business through the API.
    Agent,
    /// A record about a conversation (a call's summary).
    Summary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Contact => "contact",
            Role::Agent => "agent",
            Role::Summary => "summary",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "contact" => Role::Contact,
            "agent" => Role::Agent,
            _ => Role::Summary,
        }
    }
}

/// One thing said or done with a contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: i64,
    pub contact_id: String,
    pub channel: Channel,
    pub role: Role,
    pub text: String,
    /// The message (`msg_…`) or call record (`cdr_…`) it comes from.
    pub ref_id: Option<String>,
    /// More about it: a call's transcript (`{"transcript": [...], "duration_s": …}`).
    pub detail: Option<Value>,
    #[serde(serialize_with = "ser_time")]
    pub at: i64,
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub channel: Channel,
    pub role: Role,
    pub text: &'a str,
    pub ref_id: Option<&'a str>,
    pub detail: Option<&'a Value>,
}

const CONTACT_COLUMNS: &str =
    "id, account_id, address, kind, language, language_confidence, created_at, updated_at";

pub(crate) fn contact_from(row: &sqlx::any::AnyRow) -> Result<Contact, StoreError> {
    let address: String = row.try_get("address")?;
    Ok(Contact {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        kind: ContactKind::of(&address),
        address,
        language: row.try_get("language")?,
        language_confidence: row.try_get("language_confidence")?,
        created_at: super::int(row, "created_at")?,
        updated_at: super::int(row, "updated_at")?,
    })
}

fn entry_from(row: &sqlx::any::AnyRow) -> Result<Entry, StoreError> {
    let channel: String = row.try_get("channel")?;
    let role: String = row.try_get("role")?;
    let detail: Option<String> = row.try_get("detail")?;
    Ok(Entry {
        id: super::int(row, "id")?,
        contact_id: row.try_get("contact_id")?,
        channel: Channel::parse(&channel),
        role: Role::parse(&role),
        text: row.try_get("text")?,
        ref_id: row.try_get("ref_id")?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        at: super::int(row, "at")?,
    })
}

/// The contact of `account_id` at `address`, made when new, inside `conn`'s transaction.
pub(crate) async fn contact_in(
    conn: &mut sqlx::AnyConnection,
    account_id: &str,
    address: &str,
    now: i64,
) -> Result<Contact, StoreError> {
    let existing = sqlx::query(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 AND address = $2"
    ))
    .bind(account_id)
    .bind(address)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return contact_from(&row);
    }
    sqlx::query(
        "INSERT INTO contacts (id, account_id, address, kind, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, address) DO NOTHING",
    )
    .bind(random_id("ctc_", 16))
    .bind(account_id)
    .bind(address)
    .bind(ContactKind::of(address).as_str())
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // Another node may have made it first: read whichever row won.
    let row = sqlx::query(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 AND address = $2"
    ))
    .bind(account_id)
    .bind(address)
    .fetch_one(&mut *conn)
    .await?;
    contact_from(&row)
}

/// Adds `entry` to `contact_id`'s timeline inside `conn`'s transaction, and marks the
/// contact as just active.
pub(crate) async fn append_in(
    conn: &mut sqlx::AnyConnection,
    account_id: &str,
    contact_id: &str,
    entry: &NewEntry<'_>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO timeline (account_id, contact_id, channel, role, text, ref_id, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(account_id)
    .bind(contact_id)
    .bind(entry.channel.as_str())
    .bind(entry.role.as_str())
    .bind(entry.text)
    .bind(entry.ref_id)
    .bind(entry.detail.map(Value::to_string))
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE contacts SET updated_at = $1 WHERE id = $2")
        .bind(at)
        .bind(contact_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// The contact of `account_id` at `address` (E.164 or `web:…`), made when new.
    pub async fn contact_for(
        &self,
        account_id: &str,
        address: &str,
    ) -> Result<Contact, StoreError> {
        // Read first: most messages come from people already known, and the read pool does
        // not queue behind SQLite's one writer.
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 AND address = $2"
        ))
        .bind(account_id)
        .bind(address)
        .fetch_optional(self.reader())
        .await?;
        if let Some(row) = row {
            return contact_from(&row);
        }
        let mut conn = self.writer().acquire().await?;
        contact_in(&mut conn, account_id, address, now_ms()).await
    }

    /// The contact `id` of `account_id`.
    pub async fn contact(&self, account_id: &str, id: &str) -> Result<Contact, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("contact"))?;
        contact_from(&row)
    }

    /// The contact of `account_id` whose id or address is `id_or_address`.
    pub async fn find_contact(
        &self,
        account_id: &str,
        id_or_address: &str,
    ) -> Result<Contact, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 \
             AND (id = $2 OR address = $3)"
        ))
        .bind(account_id)
        .bind(id_or_address)
        .bind(id_or_address)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("contact"))?;
        contact_from(&row)
    }

    /// An account's contacts, newest first, after `before` (the created_at, id of the last
    /// of the previous page). Ordered by creation, which never changes, so a contact that
    /// writes while a client pages through cannot jump over the cursor and be missed.
    pub async fn contacts(
        &self,
        account_id: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Contact>, StoreError> {
        let rows = match before {
            None => {
                sqlx::query(&format!(
                    "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(account_id)
                .bind(limit)
                .fetch_all(self.reader())
                .await?
            }
            Some((at, id)) => {
                sqlx::query(&format!(
                    "SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 \
                     AND (created_at < $2 OR (created_at = $3 AND id < $4)) \
                     ORDER BY created_at DESC, id DESC LIMIT $5"
                ))
                .bind(account_id)
                .bind(at)
                .bind(at)
                .bind(id)
                .bind(limit)
                .fetch_all(self.reader())
                .await?
            }
        };
        rows.iter().map(contact_from).collect()
    }

    /// Records `language` as the contact's, detected with `confidence` (1 when a person set
    /// it).
    pub async fn set_contact_language(
        &self,
        contact_id: &str,
        language: Option<&str>,
        confidence: Option<f64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE contacts SET language = $1, language_confidence = $2, updated_at = $3 \
             WHERE id = $4",
        )
        .bind(language)
        .bind(confidence)
        .bind(now_ms())
        .bind(contact_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Adds `entry` to the contact's timeline.
    pub async fn append_timeline(
        &self,
        account_id: &str,
        contact_id: &str,
        entry: &NewEntry<'_>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        append_in(&mut tx, account_id, contact_id, entry, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The contact's latest `limit` entries before entry `before` (all when None), newest
    /// first.
    pub async fn timeline(
        &self,
        contact_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, contact_id, channel, role, text, ref_id, detail, at FROM timeline \
             WHERE contact_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(contact_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(entry_from).collect()
    }
}
