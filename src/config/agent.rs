//! The default agent's configuration: `[stt]`, `[llm]`, `[tts]` and `[agent]`.
//!
//! Providers default to `auto`, resolved once at load time from what the deployment supplies
//! (keys, base URLs, the vendors' usual environment variables), so that `make run` with no
//! keys talks with the local voice and a deployment with `OPENAI_API_KEY` and
//! `DEEPGRAM_API_KEY` talks with an AI agent, without further settings.

use std::collections::BTreeMap;
use std::fmt;

use super::{ConfigError, Origin, Value};

/// A credential: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The credential itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Speech-to-text vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttKind {
    /// Resolved at load time (see [`resolve`]).
    Auto,
    /// Deepgram live streaming over WebSocket (`/v1/listen`).
    Deepgram,
    /// OpenAI-compatible `POST /v1/audio/transcriptions`, one request per utterance.
    OpenAi,
    None,
}

/// Chat-completion vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmKind {
    Auto,
    /// OpenAI-compatible `POST /v1/chat/completions` with `stream: true`.
    OpenAi,
    None,
}

/// Text-to-speech vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsKind {
    Auto,
    /// Local espeak-ng: no network, the default voice.
    Espeak,
    /// Deepgram Aura (`POST /v1/speak`, audio streamed back as it is made).
    Deepgram,
    /// ElevenLabs WebSocket `stream-input`.
    ElevenLabs,
    /// OpenAI-compatible `POST /v1/audio/speech` with streamed PCM.
    OpenAi,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SttConfig {
    pub provider: SttKind,
    /// The vendor's URL when `None`.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    /// The vendor's default model when `None`.
    pub model: Option<String>,
    /// Deepgram `endpointing`: silence (ms) after which it finalizes a segment.
    pub endpointing_ms: u32,
    /// Connect and request timeout.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub provider: LlmKind,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    pub temperature: f64,
    pub max_tokens: u32,
    /// Longest wait for the response to start (the first byte of the stream).
    pub timeout_ms: u64,
    /// Further attempts after a failure before any output (connection errors, 429, 5xx).
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TtsConfig {
    pub provider: TtsKind,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    /// The voice for the agent's language; the vendor's default when `None`.
    pub voice: Option<String>,
    /// Voices by language code for `agent.language = "auto"` (`es = "…"`, `pt = "…"`).
    pub voices: BTreeMap<String, String>,
    pub model: Option<String>,
    pub timeout_ms: u64,
}

/// An HTTP tool the LLM may call: `POST url` with the arguments as the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpToolConfig {
    pub name: String,
    pub description: String,
    pub url: String,
    /// JSON Schema of the arguments, as JSON text.
    pub parameters: String,
    pub timeout_ms: u64,
}

/// Who answers calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// The AI agent when an LLM is configured, else the built-in menu (resolved at load).
    Auto,
    /// The AI agent (STT → LLM → TTS); an error at load when no LLM is configured.
    Ai,
    /// The built-in receptionist: a DTMF language menu and voicemail, no network.
    Menu,
    /// No agent: calls are answered, recorded and play `media.greeting` if set.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub mode: AgentMode,
    /// The system prompt.
    pub prompt: String,
    pub greeting: String,
    /// `en`, `es`, `pt`, or `auto` (detected from what the caller says).
    pub language: String,
    /// Whether caller speech interrupts the agent.
    pub interruptible: bool,
    /// Caller speech shorter than this does not interrupt (coughs, echo).
    pub barge_in_min_ms: u32,
    /// Silence after speech before the turn may end.
    pub turn_silence_ms: u32,
    /// Longest wait after the caller stops for the transcript before the turn ends anyway.
    pub turn_max_wait_ms: u32,
    /// Seconds of silence before the idle prompt; 0 = never.
    pub idle_prompt_s: u32,
    /// Seconds of silence after the idle prompt before hanging up; 0 = never.
    pub idle_hangup_s: u32,
    pub idle_prompt: String,
    /// Spoken with the local voice when a provider fails, before a graceful hang-up.
    pub fallback: String,
    pub goodbye: String,
    /// SIP URI the `transfer_call` tool REFERs the caller to; unset: no transfer tool.
    pub transfer_target: Option<String>,
    pub tools: Vec<HttpToolConfig>,
}

impl Default for SttConfig {
    fn default() -> Self {
        SttConfig {
            provider: SttKind::Auto,
            base_url: None,
            api_key: None,
            model: None,
            endpointing_ms: 300,
            timeout_ms: 5_000,
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            provider: LlmKind::Auto,
            base_url: None,
            api_key: None,
            model: None,
            temperature: 0.7,
            max_tokens: 300,
            timeout_ms: 10_000,
            retries: 2,
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            provider: TtsKind::Auto,
            base_url: None,
            api_key: None,
            voice: None,
            voices: BTreeMap::new(),
            model: None,
            timeout_ms: 5_000,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            mode: AgentMode::Auto,
            prompt: "You are a friendly, concise phone assistant. Answer in one or two short \
                     sentences; this is a voice call, so no lists, markup or emoji."
                .into(),
            greeting: "Hello! How can I help you today?".into(),
            language: "en".into(),
            interruptible: true,
            barge_in_min_ms: 250,
            turn_silence_ms: 300,
            turn_max_wait_ms: 1_500,
            idle_prompt_s: 10,
            idle_hangup_s: 20,
            idle_prompt: "Are you still there?".into(),
            fallback: "Sorry, I am having technical trouble. Please call again later. Goodbye."
                .into(),
            goodbye: "Goodbye!".into(),
            transfer_target: None,
            tools: Vec::new(),
        }
    }
}

/// Languages `agent.language` accepts besides `auto`.
pub const LANGUAGES: &[&str] = &["en", "es", "pt"];

/// The keys of this module's sections, in documentation order.
pub const AGENT_KEYS: &[&str] = &[
    "stt.provider",
    "stt.base_url",
    "stt.api_key",
    "stt.model",
    "stt.endpointing_ms",
    "stt.timeout_ms",
    "llm.provider",
    "llm.base_url",
    "llm.api_key",
    "llm.model",
    "llm.temperature",
    "llm.max_tokens",
    "llm.timeout_ms",
    "llm.retries",
    "tts.provider",
    "tts.base_url",
    "tts.api_key",
    "tts.voice",
    "tts.voices",
    "tts.model",
    "tts.timeout_ms",
    "agent.mode",
    "agent.prompt",
    "agent.greeting",
    "agent.language",
    "agent.interruptible",
    "agent.barge_in_min_ms",
    "agent.turn_silence_ms",
    "agent.turn_max_wait_ms",
    "agent.idle_prompt_s",
    "agent.idle_hangup_s",
    "agent.idle_prompt",
    "agent.fallback",
    "agent.goodbye",
    "agent.transfer_target",
    "agent.tools",
];

/// The whole AI side of the configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AiConfig {
    pub stt: SttConfig,
    pub llm: LlmConfig,
    pub tts: TtsConfig,
    pub agent: AgentConfig,
}

fn optional(v: &Value<'_>) -> Result<Option<String>, ConfigError> {
    let s = v.string()?;
    Ok((!s.trim().is_empty()).then(|| s.trim().to_string()))
}

fn url(v: &Value<'_>) -> Result<Option<String>, ConfigError> {
    let Some(s) = optional(v)? else {
        return Ok(None);
    };
    let scheme_ok = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|p| s.starts_with(p));
    if !scheme_ok || s.len() <= "https://".len() {
        return Err(v.err(format!("expected an http(s):// or ws(s):// URL, got {s:?}")));
    }
    Ok(Some(s.trim_end_matches('/').to_string()))
}

fn choice<T: Copy>(v: &Value<'_>, options: &[(&str, T)]) -> Result<T, ConfigError> {
    let s = v.string()?;
    let wanted = s.trim().to_ascii_lowercase();
    options
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            v.err(format!("expected one of {}, got {s:?}", names.join(" | ")))
        })
}

impl AiConfig {
    /// Sets one key of `[stt]`, `[llm]`, `[tts]` or `[agent]`; `Ok(false)` when the key is
    /// not one of them.
    pub(super) fn set(&mut self, key: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
        match key {
            "stt.provider" => {
                self.stt.provider = choice(
                    v,
                    &[
                        ("auto", SttKind::Auto),
                        ("deepgram", SttKind::Deepgram),
                        ("openai", SttKind::OpenAi),
                        ("none", SttKind::None),
                    ],
                )?
            }
            "stt.base_url" => self.stt.base_url = url(v)?,
            "stt.api_key" => self.stt.api_key = optional(v)?.map(Secret),
            "stt.model" => self.stt.model = optional(v)?,
            "stt.endpointing_ms" => self.stt.endpointing_ms = v.int_in(10, 10_000)? as u32,
            "stt.timeout_ms" => self.stt.timeout_ms = v.int_in(100, 120_000)?,
            "llm.provider" => {
                self.llm.provider = choice(
                    v,
                    &[
                        ("auto", LlmKind::Auto),
                        ("openai", LlmKind::OpenAi),
                        ("none", LlmKind::None),
                    ],
                )?
            }
            "llm.base_url" => self.llm.base_url = url(v)?,
            "llm.api_key" => self.llm.api_key = optional(v)?.map(Secret),
            "llm.model" => self.llm.model = optional(v)?,
            "llm.temperature" => self.llm.temperature = v.float_in(0.0, 2.0)?,
            "llm.max_tokens" => self.llm.max_tokens = v.int_in(1, 100_000)? as u32,
            "llm.timeout_ms" => self.llm.timeout_ms = v.int_in(100, 300_000)?,
            "llm.retries" => self.llm.retries = v.int_in(0, 10)? as u32,
            "tts.provider" => {
                self.tts.provider = choice(
                    v,
                    &[
                        ("auto", TtsKind::Auto),
                        ("espeak", TtsKind::Espeak),
                        ("deepgram", TtsKind::Deepgram),
                        ("elevenlabs", TtsKind::ElevenLabs),
                        ("openai", TtsKind::OpenAi),
                    ],
                )?
            }
            "tts.base_url" => self.tts.base_url = url(v)?,
            "tts.api_key" => self.tts.api_key = optional(v)?.map(Secret),
            "tts.voice" => self.tts.voice = optional(v)?,
            "tts.voices" => self.tts.voices = v.string_map()?,
            "tts.model" => self.tts.model = optional(v)?,
            "tts.timeout_ms" => self.tts.timeout_ms = v.int_in(100, 120_000)?,
            "agent.mode" => {
                self.agent.mode = choice(
                    v,
                    &[
                        ("auto", AgentMode::Auto),
                        ("ai", AgentMode::Ai),
                        ("menu", AgentMode::Menu),
                        ("off", AgentMode::Off),
                    ],
                )?
            }
            "agent.prompt" => self.agent.prompt = v.string()?,
            "agent.greeting" => self.agent.greeting = v.string()?,
            "agent.language" => {
                let s = v.string()?.trim().to_ascii_lowercase();
                if s != "auto" && !LANGUAGES.contains(&s.as_str()) {
                    return Err(v.err(format!(
                        "expected auto or one of {}, got {s:?}",
                        LANGUAGES.join(", ")
                    )));
                }
                self.agent.language = s;
            }
            "agent.interruptible" => self.agent.interruptible = v.boolean()?,
            "agent.barge_in_min_ms" => self.agent.barge_in_min_ms = v.int_in(0, 5_000)? as u32,
            "agent.turn_silence_ms" => self.agent.turn_silence_ms = v.int_in(0, 10_000)? as u32,
            "agent.turn_max_wait_ms" => self.agent.turn_max_wait_ms = v.int_in(0, 30_000)? as u32,
            "agent.idle_prompt_s" => self.agent.idle_prompt_s = v.int_in(0, 3_600)? as u32,
            "agent.idle_hangup_s" => self.agent.idle_hangup_s = v.int_in(0, 3_600)? as u32,
            "agent.idle_prompt" => self.agent.idle_prompt = v.string()?,
            "agent.fallback" => self.agent.fallback = v.string()?,
            "agent.goodbye" => self.agent.goodbye = v.string()?,
            "agent.transfer_target" => {
                self.agent.transfer_target = match optional(v)? {
                    None => None,
                    Some(s)
                        if s.starts_with("sip:")
                            || s.starts_with("sips:")
                            || s.starts_with("tel:") =>
                    {
                        Some(s)
                    }
                    Some(s) => {
                        return Err(v.err(format!("expected a sip:, sips: or tel: URI, got {s:?}")))
                    }
                }
            }
            "agent.tools" => self.agent.tools = tools(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Resolves `auto` providers and the vendors' environment variables, and checks that
    /// each chosen provider has what it needs. `env` is the process environment.
    pub(super) fn resolve(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        let var = |name: &str| {
            env.iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| Secret(v.trim().to_string()))
        };
        let deepgram = var("DEEPGRAM_API_KEY");
        let openai = var("OPENAI_API_KEY");
        let elevenlabs = var("ELEVENLABS_API_KEY");

        // STT: a Deepgram key (or a key without a base URL) means Deepgram; a base URL or
        // an OpenAI key means an OpenAI-compatible transcription server.
        if self.stt.provider == SttKind::Auto {
            self.stt.provider = if deepgram.is_some()
                || (self.stt.api_key.is_some() && self.stt.base_url.is_none())
            {
                SttKind::Deepgram
            } else if self.stt.base_url.is_some() || openai.is_some() {
                SttKind::OpenAi
            } else {
                SttKind::None
            };
        }
        if self.llm.provider == LlmKind::Auto {
            self.llm.provider =
                if self.llm.base_url.is_some() || self.llm.api_key.is_some() || openai.is_some() {
                    LlmKind::OpenAi
                } else {
                    LlmKind::None
                };
        }
        if self.tts.provider == TtsKind::Auto {
            self.tts.provider = if self.tts.base_url.is_some() || self.tts.api_key.is_some() {
                // Configured explicitly for this section: the OpenAI-compatible protocol.
                TtsKind::OpenAi
            } else if elevenlabs.is_some() {
                TtsKind::ElevenLabs
            } else if deepgram.is_some() {
                TtsKind::Deepgram
            } else if openai.is_some() {
                TtsKind::OpenAi
            } else {
                TtsKind::Espeak
            };
        }

        let missing = |key: &str, fallback: &str, provider: &str| {
            ConfigError::invalid(
                key,
                &Origin::Combined,
                format!(
                    "{provider} needs an API key: set {key} ({}) or {fallback}, or a base_url \
                     for a server that needs none",
                    super::env_name(key)
                ),
            )
        };
        match self.stt.provider {
            SttKind::Deepgram => {
                self.stt.api_key = self.stt.api_key.take().or(deepgram.clone());
                if self.stt.api_key.is_none() && self.stt.base_url.is_none() {
                    return Err(missing(
                        "stt.api_key",
                        "DEEPGRAM_API_KEY",
                        "stt.provider = deepgram",
                    ));
                }
            }
            SttKind::OpenAi => {
                self.stt.api_key = self.stt.api_key.take().or(openai.clone());
                if self.stt.api_key.is_none() && self.stt.base_url.is_none() {
                    return Err(missing(
                        "stt.api_key",
                        "OPENAI_API_KEY",
                        "stt.provider = openai",
                    ));
                }
            }
            SttKind::None | SttKind::Auto => {}
        }
        if self.llm.provider == LlmKind::OpenAi {
            self.llm.api_key = self.llm.api_key.take().or(openai.clone());
            if self.llm.api_key.is_none() && self.llm.base_url.is_none() {
                return Err(missing(
                    "llm.api_key",
                    "OPENAI_API_KEY",
                    "llm.provider = openai",
                ));
            }
        }
        let tts_key = match self.tts.provider {
            TtsKind::Deepgram => Some(("DEEPGRAM_API_KEY", deepgram, "tts.provider = deepgram")),
            TtsKind::ElevenLabs => Some((
                "ELEVENLABS_API_KEY",
                elevenlabs,
                "tts.provider = elevenlabs",
            )),
            TtsKind::OpenAi => Some(("OPENAI_API_KEY", openai, "tts.provider = openai")),
            TtsKind::Espeak | TtsKind::Auto => None,
        };
        if let Some((fallback, key, provider)) = tts_key {
            self.tts.api_key = self.tts.api_key.take().or(key);
            if self.tts.api_key.is_none() && self.tts.base_url.is_none() {
                return Err(missing("tts.api_key", fallback, provider));
            }
        }
        // An AI agent needs ears as well as a brain.
        if self.llm.provider != LlmKind::None && self.stt.provider == SttKind::None {
            return Err(ConfigError::invalid(
                "stt.provider",
                &Origin::Combined,
                "an LLM is configured but no speech-to-text: set stt.provider with its key \
                 (DEEPGRAM_API_KEY) or stt.base_url for an OpenAI-compatible transcription \
                 server",
            ));
        }
        match self.agent.mode {
            AgentMode::Auto => {
                self.agent.mode = if self.ai_enabled() {
                    AgentMode::Ai
                } else {
                    AgentMode::Menu
                };
            }
            AgentMode::Ai if !self.ai_enabled() => {
                return Err(ConfigError::invalid(
                    "agent.mode",
                    &Origin::Combined,
                    "agent.mode = ai needs an LLM: set llm.base_url or llm.api_key \
                     (OPENAI_API_KEY), with stt and tts providers",
                ));
            }
            _ => {}
        }
        for tool in &self.agent.tools {
            if ["end_call", "transfer_call", "send_dtmf", "send_sms"].contains(&tool.name.as_str())
            {
                return Err(ConfigError::invalid(
                    "agent.tools",
                    &Origin::Combined,
                    format!("tool name {:?} is a built-in tool's", tool.name),
                ));
            }
        }
        Ok(())
    }

    /// Whether calls are answered by the AI agent (an LLM is configured) rather than the
    /// built-in, network-free menu agent.
    pub fn ai_enabled(&self) -> bool {
        self.llm.provider == LlmKind::OpenAi
    }
}

/// `agent.tools`: an array of tables in TOML, a JSON array in the environment.
fn tools(v: &Value<'_>) -> Result<Vec<HttpToolConfig>, ConfigError> {
    let items: Vec<serde_json::Value> = v.json_array()?;
    http_tools(&items).map_err(|why| v.err(why))
}

/// HTTP tools from their JSON entries (`agent.tools`, or a stored agent's `tools`); the
/// refusal names the entry and the field.
pub fn http_tools(items: &[serde_json::Value]) -> Result<Vec<HttpToolConfig>, String> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str, why: &str| format!("tool {i}: {field}: {why}");
        let obj = item
            .as_object()
            .ok_or_else(|| at("(entry)", "expected a table"))?;
        for k in obj.keys() {
            if !["name", "description", "url", "parameters", "timeout_ms"].contains(&k.as_str()) {
                return Err(at(
                    k,
                    "unknown field (name, description, url, parameters, timeout_ms)",
                ));
            }
        }
        let text = |field: &str| -> Result<String, String> {
            obj.get(field)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| at(field, "required, a string"))
        };
        let name = text("name")?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(at("name", "1 to 64 letters, digits, _ or -"));
        }
        let url = text("url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(at("url", "expected an http(s):// URL"));
        }
        let parameters = match obj.get("parameters") {
            None => r#"{"type":"object","properties":{}}"#.to_string(),
            Some(serde_json::Value::String(s)) => {
                let parsed: serde_json::Value = serde_json::from_str(s)
                    .map_err(|e| at("parameters", &format!("not JSON: {e}")))?;
                parsed.to_string()
            }
            Some(other) => other.to_string(),
        };
        let schema: serde_json::Value = serde_json::from_str(&parameters).unwrap_or_default();
        if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
            return Err(at("parameters", "a JSON Schema with \"type\": \"object\""));
        }
        let timeout_ms = match obj.get("timeout_ms") {
            None => 5_000,
            Some(t) => t
                .as_u64()
                .filter(|t| (1..=120_000).contains(t))
                .ok_or_else(|| at("timeout_ms", "an integer from 1 to 120000"))?,
        };
        out.push(HttpToolConfig {
            name,
            description: obj
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
            url,
            parameters,
            timeout_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_with_env(Some(&path), &env(vars))
    }

    #[test]
    fn no_keys_means_the_local_agent_with_espeak() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.ai.stt.provider, SttKind::None);
        assert_eq!(c.ai.llm.provider, LlmKind::None);
        assert_eq!(c.ai.tts.provider, TtsKind::Espeak);
        assert!(!c.ai.ai_enabled());
    }

    #[test]
    fn vendor_keys_in_the_environment_choose_the_providers() {
        let c = load("", &[("DEEPGRAM_API_KEY", "dg"), ("OPENAI_API_KEY", "sk")]).unwrap();
        assert_eq!(c.ai.stt.provider, SttKind::Deepgram);
        assert_eq!(c.ai.stt.api_key.as_ref().unwrap().expose(), "dg");
        assert_eq!(c.ai.llm.provider, LlmKind::OpenAi);
        assert_eq!(c.ai.llm.api_key.as_ref().unwrap().expose(), "sk");
        assert_eq!(c.ai.tts.provider, TtsKind::Deepgram);
        assert!(c.ai.ai_enabled());

        let c = load(
            "",
            &[
                ("DEEPGRAM_API_KEY", "dg"),
                ("OPENAI_API_KEY", "sk"),
                ("ELEVENLABS_API_KEY", "el"),
            ],
        )
        .unwrap();
        assert_eq!(c.ai.tts.provider, TtsKind::ElevenLabs);
        assert_eq!(c.ai.tts.api_key.as_ref().unwrap().expose(), "el");

        // Only OpenAI: Whisper-style STT, chat, and speech all from one key.
        let c = load("", &[("OPENAI_API_KEY", "sk")]).unwrap();
        assert_eq!(c.ai.stt.provider, SttKind::OpenAi);
        assert_eq!(c.ai.tts.provider, TtsKind::OpenAi);
    }

    #[test]
    fn local_servers_need_only_base_urls() {
        let c = load(
            "[stt]\nbase_url = \"http://127.0.0.1:9000/v1/\"\n[llm]\nbase_url = \"http://127.0.0.1:11434/v1\"\nmodel = \"llama3\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.ai.stt.provider, SttKind::OpenAi);
        assert_eq!(
            c.ai.stt.base_url.as_deref(),
            Some("http://127.0.0.1:9000/v1")
        );
        assert_eq!(c.ai.llm.provider, LlmKind::OpenAi);
        assert!(c.ai.llm.api_key.is_none());
        assert_eq!(c.ai.tts.provider, TtsKind::Espeak);
        // PARLEY_<SECTION>_<KEY> works for these sections too.
        let c = load(
            "",
            &[
                ("PARLEY_LLM_BASE_URL", "http://127.0.0.1:8000/v1"),
                ("PARLEY_STT_PROVIDER", "deepgram"),
                ("PARLEY_STT_BASE_URL", "ws://127.0.0.1:8001"),
                ("PARLEY_AGENT_LANGUAGE", "auto"),
            ],
        )
        .unwrap();
        assert_eq!(c.ai.stt.provider, SttKind::Deepgram);
        assert_eq!(c.ai.agent.language, "auto");
    }

    #[test]
    fn missing_keys_are_named_at_startup() {
        let e = load("[stt]\nprovider = \"deepgram\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`stt.api_key`") && e.contains("DEEPGRAM_API_KEY"),
            "{e}"
        );
        let e = load(
            "[llm]\nprovider = \"openai\"\n",
            &[("DEEPGRAM_API_KEY", "dg")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`llm.api_key`") && e.contains("OPENAI_API_KEY"),
            "{e}"
        );
        let e = load("[tts]\nprovider = \"elevenlabs\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`tts.api_key`") && e.contains("ELEVENLABS_API_KEY"),
            "{e}"
        );
        // An LLM without STT cannot hear the caller.
        let e = load("[llm]\nbase_url = \"http://127.0.0.1:1/v1\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`stt.provider`"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, key) in [
            ("[stt]\nprovider = \"whisper\"\n", "stt.provider"),
            ("[llm]\nbase_url = \"localhost:8000\"\n", "llm.base_url"),
            ("[llm]\ntemperature = 3.5\n", "llm.temperature"),
            ("[agent]\nlanguage = \"fr\"\n", "agent.language"),
            (
                "[agent]\ntransfer_target = \"1234\"\n",
                "agent.transfer_target",
            ),
            ("[tts]\nvoices = \"es\"\n", "tts.voices"),
        ] {
            let e = load(text, &[]).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text:?} -> {e}");
        }
    }

    #[test]
    fn http_tools_from_toml_and_from_json() {
        let c = load(
            r#"
[[agent.tools]]
name = "book_appointment"
description = "Books a slot"
url = "http://127.0.0.1:7000/book"
timeout_ms = 2000
parameters = { type = "object", properties = { day = { type = "string" } }, required = ["day"] }
"#,
            &[],
        )
        .unwrap();
        let t = &c.ai.agent.tools[0];
        assert_eq!(t.name, "book_appointment");
        assert_eq!(t.timeout_ms, 2000);
        let schema: serde_json::Value = serde_json::from_str(&t.parameters).unwrap();
        assert_eq!(schema["required"][0], "day");

        let c = load(
            "",
            &[(
                "PARLEY_AGENT_TOOLS",
                r#"[{"name":"lookup","url":"https://example.com/x","parameters":"{\"type\":\"object\"}"}]"#,
            )],
        )
        .unwrap();
        assert_eq!(c.ai.agent.tools[0].name, "lookup");
        assert_eq!(c.ai.agent.tools[0].timeout_ms, 5000);

        for (bad, why) in [
            (r#"[{"url":"http://x/y"}]"#, "name"),
            (r#"[{"name":"a b","url":"http://x/y"}]"#, "name"),
            (r#"[{"name":"a","url":"ftp://x"}]"#, "url"),
            (
                r#"[{"name":"a","url":"http://x/y","parameters":{"type":"string"}}]"#,
                "parameters",
            ),
            (r#"[{"name":"a","url":"http://x/y","colour":1}]"#, "colour"),
            (r#"[{"name":"end_call","url":"http://x/y"}]"#, "built-in"),
        ] {
            let e = load("", &[("PARLEY_AGENT_TOOLS", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("agent.tools") && e.contains(why), "{bad} -> {e}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = load("", &[("OPENAI_API_KEY", "sk-very-secret")]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }
}
