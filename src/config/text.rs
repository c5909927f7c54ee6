//! `[sms]` (Twilio: webhooks in, REST out) and `[memory]` (what the agent recalls of a
//! contact across calls, SMS and web chat).

use super::{ConfigError, Value};

#[derive(Clone, PartialEq)]
pub struct SmsConfig {
    /// Twilio's Account SID (`AC…`); empty: no SMS (webhooks answer 503, sends are refused).
    pub twilio_account_sid: String,
    /// The auth token: signs Twilio's webhooks (checked) and authenticates REST calls.
    pub twilio_auth_token: String,
    /// Twilio's REST API root (tests point it at a fake).
    pub twilio_api_url: String,
    /// The URL Twilio reaches Parley at, as configured in Twilio's console, without the
    /// path (`https://voice.example.com`). Webhook signatures are computed over the exact
    /// URL Twilio requested, so behind a proxy or load balancer this must be the public
    /// one; empty: `http://` plus the request's Host header.
    pub public_url: String,
    /// Send Twilio a StatusCallback URL with each message, for delivery status.
    pub status_callbacks: bool,
    /// Messages an account may send per minute (its own `sms_per_minute` overrides).
    pub per_minute: u32,
    /// Tries per message on 5xx, 429 and network errors (other refusals are final).
    pub max_attempts: u32,
    /// The agent answers inbound SMS.
    pub reply: bool,
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsConfig")
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field(
                "twilio_auth_token",
                &(!self.twilio_auth_token.is_empty()).then_some("(set)"),
            )
            .field("twilio_api_url", &self.twilio_api_url)
            .field("public_url", &self.public_url)
            .field("status_callbacks", &self.status_callbacks)
            .field("per_minute", &self.per_minute)
            .field("max_attempts", &self.max_attempts)
            .field("reply", &self.reply)
            .finish()
    }
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            twilio_account_sid: String::new(),
            twilio_auth_token: String::new(),
            twilio_api_url: "https://api.twilio.com".into(),
            public_url: String::new(),
            status_callbacks: true,
            per_minute: 60,
            max_attempts: 5,
            reply: true,
        }
    }
}

impl SmsConfig {
    /// Twilio is configured.
    pub fn enabled(&self) -> bool {
        !self.twilio_account_sid.is_empty() && !self.twilio_auth_token.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// The most of a contact's timeline put in the agent's context, in characters (about
    /// four per token).
    pub context_chars: usize,
    /// Entries older than this many days are left out of the context.
    pub max_age_days: u32,
    /// Summarize each call with the LLM at its end (else: its first and last lines).
    pub llm_summary: bool,
    /// A caller the agent knows is greeted by the LLM, with what it knows, instead of the
    /// fixed greeting.
    pub greet_known: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            context_chars: 4_000,
            max_age_days: 90,
            llm_summary: true,
            greet_known: true,
        }
    }
}

pub const TEXT_KEYS: &[&str] = &[
    "sms.twilio_account_sid",
    "sms.twilio_auth_token",
    "sms.twilio_api_url",
    "sms.public_url",
    "sms.status_callbacks",
    "sms.per_minute",
    "sms.max_attempts",
    "sms.reply",
    "memory.context_chars",
    "memory.max_age_days",
    "memory.llm_summary",
    "memory.greet_known",
];

/// An http(s) URL without a trailing slash (or empty).
fn base_url(v: &Value<'_>, allow_empty: bool) -> Result<String, ConfigError> {
    let url = v.string()?.trim().trim_end_matches('/').to_string();
    if url.is_empty() && allow_empty {
        return Ok(url);
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(v.err(format!("expected an http:// or https:// URL, got {url:?}")));
    }
    Ok(url)
}

/// Sets `key` when it is one of `[sms]` or `[memory]`; false when it is not.
pub(super) fn set(
    sms: &mut SmsConfig,
    memory: &mut MemoryConfig,
    key: &str,
    v: &Value<'_>,
) -> Result<bool, ConfigError> {
    match key {
        "sms.twilio_account_sid" => {
            let sid = v.string()?;
            let well_formed = sid.starts_with("AC") && sid.len() == 34;
            if !sid.is_empty() && !well_formed {
                return Err(v.err("expected Twilio's Account SID: AC and 32 hex digits"));
            }
            sms.twilio_account_sid = sid;
        }
        "sms.twilio_auth_token" => sms.twilio_auth_token = v.string()?,
        "sms.twilio_api_url" => sms.twilio_api_url = base_url(v, false)?,
        "sms.public_url" => sms.public_url = base_url(v, true)?,
        "sms.status_callbacks" => sms.status_callbacks = v.boolean()?,
        "sms.per_minute" => sms.per_minute = v.int_in(1, 100_000)? as u32,
        "sms.max_attempts" => sms.max_attempts = v.int_in(1, 20)? as u32,
        "sms.reply" => sms.reply = v.boolean()?,
        "memory.context_chars" => memory.context_chars = v.int_in(0, 200_000)? as usize,
        "memory.max_age_days" => memory.max_age_days = v.int_in(1, 3_650)? as u32,
        "memory.llm_summary" => memory.llm_summary = v.boolean()?,
        "memory.greet_known" => memory.greet_known = v.boolean()?,
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sms_and_memory_keys_apply_and_are_checked() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let c = Config::load_with_env(
            None,
            &env(&[
                ("PARLEY_SMS_TWILIO_ACCOUNT_SID", sid),
                ("PARLEY_SMS_TWILIO_AUTH_TOKEN", "secret"),
                ("PARLEY_SMS_PUBLIC_URL", "https://voice.example.com/"),
                ("PARLEY_SMS_PER_MINUTE", "10"),
                ("PARLEY_MEMORY_CONTEXT_CHARS", "2000"),
                ("PARLEY_MEMORY_GREET_KNOWN", "false"),
            ]),
        )
        .unwrap();
        assert!(c.sms.enabled());
        assert_eq!(c.sms.public_url, "https://voice.example.com");
        assert_eq!(c.sms.per_minute, 10);
        assert_eq!(c.memory.context_chars, 2000);
        assert!(!c.memory.greet_known);
        assert!(
            !format!("{:?}", c.sms).contains("secret"),
            "the token is not logged"
        );
        assert!(!Config::default().sms.enabled());

        for (key, value, why) in [
            ("PARLEY_SMS_TWILIO_ACCOUNT_SID", "AC123", "Account SID"),
            ("PARLEY_SMS_TWILIO_API_URL", "ftp://x", "http"),
            ("PARLEY_SMS_PER_MINUTE", "0", "outside"),
            ("PARLEY_MEMORY_MAX_AGE_DAYS", "0", "outside"),
        ] {
            let e = Config::load_with_env(None, &env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{key}={value}: {e}");
        }
        let half = Config::load_with_env(None, &env(&[("PARLEY_SMS_TWILIO_ACCOUNT_SID", sid)]))
            .unwrap_err()
            .to_string();
        assert!(half.contains("go together"), "{half}");
    }
}
