//! An account's stored agent (`/v1/agents`) laid over the config file's agent: a number's
//! agent changes what its calls get (prompt, greeting, language, voice, LLM model, HTTP
//! tools, call length) and keeps the rest (provider endpoints and keys, turn-taking) from
//! the config file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::conversation::tool_specs;
use super::session::AgentRuntime;
use crate::config::agent::{http_tools, HttpToolConfig};
use crate::providers::llm::Llm;
use crate::providers::tts::Tts;
use crate::providers::Ttfb;

/// The settings a stored agent may change; `None` keeps the config file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentProfile {
    pub prompt: Option<String>,
    pub greeting: Option<String>,
    pub language: Option<String>,
    pub voice: Option<String>,
    /// The LLM model, on the configured LLM endpoint.
    pub llm_model: Option<String>,
    /// HTTP tools, instead of the config file's.
    pub tools: Option<Vec<HttpToolConfig>>,
    /// 0: no limit.
    pub max_duration_s: Option<u64>,
}

impl AgentProfile {
    /// The profile in an agent's stored settings (the API checked them when they were set).
    pub fn from_stored(settings: &Value) -> AgentProfile {
        let text = |key: &str| settings[key].as_str().map(str::to_string);
        AgentProfile {
            prompt: text("prompt"),
            greeting: text("greeting"),
            language: text("language"),
            voice: text("voice"),
            llm_model: text("llm_model"),
            // Checked by the API when stored; an entry that no longer reads is left out.
            tools: settings["tools"]
                .as_array()
                .and_then(|items| http_tools(items).ok()),
            max_duration_s: settings["max_duration_s"].as_u64(),
        }
    }

    /// The call's length limit: the profile's, else `default_s`; `None` when unlimited.
    pub fn max_duration(&self, default_s: u64) -> Option<Duration> {
        let s = self.max_duration_s.unwrap_or(default_s);
        (s > 0).then(|| Duration::from_secs(s))
    }

    /// `base` as this profile configures it. The voice replaces the configured voices for
    /// every language: an agent has one voice.
    pub fn apply(&self, base: &AgentRuntime) -> AgentRuntime {
        let mut rt = base.clone();
        let settings = &mut rt.settings;
        if let Some(prompt) = &self.prompt {
            settings.system_prompt = prompt.clone();
        }
        if let Some(greeting) = &self.greeting {
            settings.greeting = greeting.clone();
        }
        if let Some(language) = &self.language {
            settings.language = language.clone();
        }
        if let Some(tools) = &self.tools {
            rt.settings.tools = tool_specs(tools);
            rt.tools = tools.clone();
        }
        if let Some(model) = &self.llm_model {
            let mut llm = base.llm_config.clone();
            llm.model = Some(model.clone());
            if let Some(made) = Llm::from_config(&llm, Ttfb::new(base.metrics.llm_ttfb.clone())) {
                rt.llm = made;
                rt.llm_config = llm;
            }
        }
        if let Some(voice) = &self.voice {
            let mut tts = base.tts_config.clone();
            tts.voice = Some(voice.clone());
            tts.voices.clear();
            rt.tts = Tts::from_config(&tts, Ttfb::new(base.metrics.tts_ttfb.clone()));
            rt.tts_config = tts;
        }
        rt
    }
}

/// Runtimes of stored agents, made once per version of their settings (a voice of its own
/// means a provider client of its own; calls to the same agent share it).
#[derive(Default)]
pub struct AgentRuntimes {
    made: Mutex<HashMap<String, (i64, Arc<AgentRuntime>)>>,
}

/// Stored agents kept at most; beyond that the cache starts over (a rebuild costs little).
const MAX_KEPT: usize = 1_000;

impl AgentRuntimes {
    /// The runtime of agent `id` at settings version `version`.
    pub fn get(
        &self,
        base: &AgentRuntime,
        id: &str,
        version: i64,
        profile: &AgentProfile,
    ) -> Arc<AgentRuntime> {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, rt)) = made.get(id) {
            if *v == version {
                return rt.clone();
            }
        }
        if made.len() >= MAX_KEPT {
            made.clear();
        }
        let rt = Arc::new(profile.apply(base));
        made.insert(id.to_string(), (version, rt.clone()));
        rt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_settings_become_a_profile() {
        let p = AgentProfile::from_stored(&json!({
            "prompt": "You are Bob's Bakery.",
            "greeting": "Bob's Bakery!",
            "language": "es",
            "voice": "nova",
            "llm_model": "gpt-4.1-mini",
            "tools": [{"name": "lookup", "url": "http://127.0.0.1:9/lookup"}],
            "max_duration_s": 120,
        }));
        assert_eq!(p.llm_model.as_deref(), Some("gpt-4.1-mini"));
        assert_eq!(p.tools.as_ref().map(|t| t[0].name.as_str()), Some("lookup"));
        assert_eq!(p.prompt.as_deref(), Some("You are Bob's Bakery."));
        assert_eq!(p.greeting.as_deref(), Some("Bob's Bakery!"));
        assert_eq!(p.language.as_deref(), Some("es"));
        assert_eq!(p.voice.as_deref(), Some("nova"));
        assert_eq!(p.max_duration(600), Some(Duration::from_secs(120)));
        let empty = AgentProfile::from_stored(&json!({}));
        assert_eq!(empty, AgentProfile::default());
        assert_eq!(empty.max_duration(600), Some(Duration::from_secs(600)));
        assert_eq!(empty.max_duration(0), None);
        let unlimited = AgentProfile::from_stored(&json!({"max_duration_s": 0}));
        assert_eq!(unlimited.max_duration(600), None);
    }
}
