//! Parley's one typed configuration: embedded defaults, then a TOML file, then `PARLEY_*`
//! environment variables, each layer validated with an error that names the key.
//!
//! The TOML is walked by hand instead of through serde so that every error can name the full
//! dotted key (`sip.lisen`) and the environment variable that set it, which is what an operator
//! needs when a deployment refuses to start.

pub mod agent;
pub mod text;
pub mod trunks;
pub mod webrtc;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, always tied to the key that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file is not valid TOML: {0}")]
    Syntax(String),
    #[error("unknown config key `{key}`{hint}")]
    UnknownKey { key: String, hint: String },
    #[error("invalid value for `{key}`{source_note}: {reason}")]
    InvalidValue {
        key: String,
        source_note: String,
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, origin: &Origin, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            key: key.to_string(),
            source_note: origin.note(),
            reason: reason.into(),
        }
    }
}

/// A range of UDP ports for RTP, inclusive on both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("expected \"FIRST-LAST\" (e.g. \"20000-29999\"), got {s:?}"))?;
        let start: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("first port {a:?} is not a port number"))?;
        let end: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("last port {b:?} is not a port number"))?;
        if start == 0 {
            return Err("port 0 cannot be used for RTP".into());
        }
        if start > end {
            return Err(format!("first port {start} is above last port {end}"));
        }
        // RTP uses the even port and RTCP the odd one above it (RFC 3550 §11), so a usable
        // range must hold at least one even/odd pair.
        let first_even = start + (start % 2);
        if first_even >= end {
            return Err(format!(
                "range {start}-{end} holds no even/odd port pair for RTP and RTCP"
            ));
        }
        Ok(PortRange { start, end })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SipConfig {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// Concurrent calls admitted before new INVITEs get 503.
    pub max_calls: u32,
    /// 0: answer at once. Otherwise send 180 Ringing and answer after this long.
    pub ring_ms: u64,
    /// RFC 3261 timer T1 (RTT estimate).
    pub t1_ms: u64,
    /// RFC 3261 timer T2 (maximum retransmit interval for non-INVITE requests and INVITE responses).
    pub t2_ms: u64,
    /// RFC 3261 timer T4 (maximum duration a message stays in the network).
    pub t4_ms: u64,
    /// Address written into Contact and SDP; unset means "the local address that routes to the peer".
    pub external_ip: Option<IpAddr>,
    /// Seconds suggested in Retry-After when Parley is at capacity.
    pub retry_after_s: u32,
    /// Server / User-Agent header value.
    pub user_agent: String,
    /// Calls to numbers that are not configured reach the default agent (true) or get 404
    /// (false); None: true while no number is configured at all.
    pub catch_all: Option<bool>,
    /// The carriers' trunks: outbound calls go through them, inbound calls from them are
    /// recognised by their source address.
    pub trunks: Vec<trunks::TrunkConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    pub rtp_ports: PortRange,
    /// A call with no RTP received for this long is ended with BYE.
    pub rtp_timeout_s: u64,
    /// WAV played to the caller when the call is answered.
    pub greeting: Option<PathBuf>,
    /// Record what the caller sends to `<data_dir>/recordings/<call-id>.wav`.
    pub record: bool,
    /// Media worker threads; 0 means one per core.
    pub workers: usize,
    /// The workers' nice value (-20..19; 0 leaves it): below 0 they run ahead of the
    /// control plane on a busy machine (needs root or CAP_SYS_NICE).
    pub worker_nice: i32,
    /// Run the Silero VAD on the caller's audio.
    pub vad: bool,
    /// ONNX Runtime shared library; None: `.cache/models/libonnxruntime.so.1.22.1` if present.
    pub onnxruntime: Option<PathBuf>,
    /// Silero VAD model; None: `.cache/models/silero_vad.onnx` if present.
    pub vad_model: Option<PathBuf>,
    /// Speech probability above which a window is speech.
    pub vad_threshold: f64,
    pub vad_min_speech_ms: u32,
    pub vad_min_silence_ms: u32,
    pub vad_pad_ms: u32,
    /// Hold the outgoing RTP stream between talkspurts, so a reply starts on the wire the
    /// moment its audio is ready (false: a continuous stream of 20 ms packets).
    pub silence_suppression: bool,
    /// While the stream is held, one packet of silence this often; 0 sends none.
    pub keepalive_ms: u64,
}

/// Where `scripts/fetch_models.sh` puts the VAD assets.
pub const DEFAULT_ONNXRUNTIME: &str = ".cache/models/libonnxruntime.so.1.22.1";
pub const DEFAULT_VAD_MODEL: &str = ".cache/models/silero_vad.onnx";

impl MediaConfig {
    /// The ONNX Runtime library and the Silero model this configuration uses: configured
    /// paths (checked to exist at load), or the fetched defaults; None when the VAD is off.
    fn vad_files(&self) -> Option<[PathBuf; 2]> {
        self.vad.then(|| {
            [
                self.onnxruntime
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_ONNXRUNTIME)),
                self.vad_model
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_VAD_MODEL)),
            ]
        })
    }

    /// The VAD assets to load, (library, model); None when the VAD is off or an asset is
    /// absent.
    pub fn vad_paths(&self) -> Option<(PathBuf, PathBuf)> {
        let [lib, model] = self.vad_files()?;
        (lib.is_file() && model.is_file()).then_some((lib, model))
    }

    /// The VAD assets this configuration needs that are not on disk: empty when the VAD is
    /// off or both files are there (in practice the fetched defaults: configured paths are
    /// checked at load).
    pub fn vad_assets_missing(&self) -> Vec<PathBuf> {
        self.vad_files()
            .into_iter()
            .flatten()
            .filter(|p| !p.is_file())
            .collect()
    }
}

/// What a missing VAD takes away, and the one command that brings it back; shared by the
/// server's start-up warning and `parley doctor`.
pub const VAD_MISSING_ADVICE: &str = "without the VAD, calls are still answered (menu, DTMF, \
     recordings, the API, Deepgram's streaming STT), but an AI agent with an OpenAI-compatible \
     STT never hears the caller (its turns are cut on VAD events) and barge-in is off. Fix: run \
     `make models` (scripts/fetch_models.sh) in Parley's source tree, or set media.onnxruntime \
     and media.vad_model (PARLEY_MEDIA_ONNXRUNTIME, PARLEY_MEDIA_VAD_MODEL) to the files";

#[derive(Debug, Clone, PartialEq)]
pub struct BillingConfig {
    /// How often a call renews its billing lease (it reserves two of these ahead).
    pub heartbeat_s: u64,
    /// What a call does when its account's credit runs out (final units used).
    pub final_unit_action: FinalUnitAction,
    /// Spoken (with the local voice) just before a call ends for lack of credit; empty:
    /// hang up without a word.
    pub final_unit_notice: String,
}

/// RFC 4006's Final-Unit-Action, as far as a voice call can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalUnitAction {
    /// Speak the notice and end the call when the granted units are used.
    Terminate,
    /// Let the call go on; what it uses beyond the grant is recorded as the account's debt.
    Allow,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            heartbeat_s: 30,
            final_unit_action: FinalUnitAction::Terminate,
            final_unit_notice: "Your prepaid credit has run out, so this call ends now. Goodbye."
                .into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallConfig {
    /// 0 = unlimited. When reached, Parley ends the call with BYE.
    pub max_duration_s: u64,
    /// On shutdown, how long calls in progress may go on before Parley hangs them up.
    pub drain_s: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://…`; empty: `<data_dir>/parley.db`.
    pub url: String,
}

/// `[redis]`: state shared between Parley nodes (per-account call limits, live calls).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`; empty: no Redis, everything in-process.
    pub url: String,
    /// Prepended to every key and channel, so several deployments can share one Redis.
    pub prefix: String,
    /// This node's name, in Redis and in its call records; empty: a random one per process
    /// in Redis, the host's name in records ([`RedisConfig::node_name`]).
    pub node_id: String,
    /// How long a node's entries outlive its last refresh (it refreshes every third of
    /// this): a crashed node's calls stop counting and being listed after this long.
    pub ttl_s: u64,
}

impl RedisConfig {
    /// The name this node's call records carry: `node_id`, else the host's name (the same
    /// for every process on the host: several nodes on one host set `node_id` each).
    pub fn node_name(&self) -> &str {
        if self.node_id.is_empty() {
            host_name()
        } else {
            &self.node_id
        }
    }
}

/// The host's name (`gethostname`), read once; `parley` when it cannot be read.
fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if ok && !name.is_empty() {
            name
        } else {
            "parley".to_string()
        }
    })
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            prefix: "parley:".into(),
            node_id: String::new(),
            ttl_s: 15,
        }
    }
}

#[derive(Clone, PartialEq, Default)]
pub struct ApiConfig {
    /// The operator's admin key; None: one is made at first start and printed once.
    pub admin_key: Option<String>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("admin_key", &self.admin_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub call: CallConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub billing: BillingConfig,
    pub redis: RedisConfig,
    pub sms: text::SmsConfig,
    pub memory: text::MemoryConfig,
    /// `[webrtc]`: browser calls.
    pub webrtc: webrtc::WebRtcConfig,
    /// `[stt]`, `[llm]`, `[tts]` and `[agent]`: the default agent.
    pub ai: agent::AiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            sip: SipConfig {
                listen: "0.0.0.0:5060".parse().expect("valid literal"),
                max_calls: 1000,
                ring_ms: 0,
                t1_ms: 500,
                t2_ms: 4000,
                t4_ms: 5000,
                external_ip: None,
                retry_after_s: 5,
                user_agent: format!("Parley/{}", env!("CARGO_PKG_VERSION")),
                catch_all: None,
                trunks: Vec::new(),
            },
            media: MediaConfig {
                rtp_ports: PortRange {
                    start: 20000,
                    end: 29999,
                },
                rtp_timeout_s: 30,
                greeting: None,
                record: true,
                workers: 0,
                worker_nice: -10,
                vad: true,
                onnxruntime: None,
                vad_model: None,
                vad_threshold: 0.5,
                vad_min_speech_ms: 250,
                vad_min_silence_ms: 100,
                vad_pad_ms: 30,
                silence_suppression: true,
                keepalive_ms: 5000,
            },
            call: CallConfig {
                max_duration_s: 0,
                drain_s: 30,
            },
            http: HttpConfig {
                listen: "127.0.0.1:8080".parse().expect("valid literal"),
            },
            database: DatabaseConfig::default(),
            api: ApiConfig::default(),
            billing: BillingConfig::default(),
            redis: RedisConfig::default(),
            sms: text::SmsConfig::default(),
            memory: text::MemoryConfig::default(),
            webrtc: webrtc::WebRtcConfig::default(),
            ai: agent::AiConfig::default(),
        }
    }
}

/// A recording's file name for a call: its Call-ID made filesystem-safe, `.wav` (in
/// [`Config::recordings_dir`], or a menu's voicemail directory).
pub fn recording_name(call_id: &str) -> String {
    let name: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.wav", name.trim_start_matches('.'))
}

impl Config {
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// The SIP core's settings from the `[sip]` section.
    pub fn endpoint_config(&self) -> crate::sip::endpoint::EndpointConfig {
        crate::sip::endpoint::EndpointConfig {
            timers: crate::sip::transaction::TimerConfig {
                t1: Duration::from_millis(self.sip.t1_ms),
                t2: Duration::from_millis(self.sip.t2_ms),
                t4: Duration::from_millis(self.sip.t4_ms),
            },
            user_agent: self.sip.user_agent.clone(),
        }
    }

    /// Defaults, then the file (if any), then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            config.apply_toml(&text)?;
        }
        config.apply_env(env)?;
        config.ai.resolve(env)?;
        config.validate()?;
        Ok(config)
    }

    /// The file's configuration alone (no environment).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_toml(text)?;
        config.ai.resolve(&[])?;
        config.validate()?;
        Ok(config)
    }

    fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string()))?;
        for (name, value) in &table {
            match value {
                toml::Value::Table(section) if SECTIONS.contains(&name.as_str()) => {
                    for (key, value) in section {
                        let dotted = format!("{name}.{key}");
                        self.set(&dotted, Raw::Toml(value), &Origin::File)?;
                    }
                }
                toml::Value::Table(section) => {
                    let first = section.keys().next().map(|k| format!(".{k}"));
                    return Err(ConfigError::UnknownKey {
                        key: format!("{name}{}", first.unwrap_or_default()),
                        hint: format!(
                            " (no section [{name}]; known sections: {})",
                            SECTIONS.join(", ")
                        ),
                    });
                }
                _ => self.set(name, Raw::Toml(value), &Origin::File)?,
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("PARLEY_") else {
                continue;
            };
            // Variables for the test suite and logging share the prefix but are not config keys.
            if rest.starts_with("TEST_") || rest == "LOG" {
                continue;
            }
            let key = all_keys().find(|k| env_name(k) == *var).ok_or_else(|| {
                ConfigError::UnknownKey {
                    key: var.clone(),
                    hint: " (environment variable; no config key of that name)".into(),
                }
            })?;
            self.set(key, Raw::Env(value), &Origin::Env(var.clone()))?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, raw: Raw<'_>, origin: &Origin) -> Result<(), ConfigError> {
        let v = Value { key, raw, origin };
        match key {
            "data_dir" => self.data_dir = PathBuf::from(v.string()?),
            "sip.listen" => self.sip.listen = v.parsed("an address like \"0.0.0.0:5060\"")?,
            "sip.max_calls" => self.sip.max_calls = v.int_in(1, 1_000_000)? as u32,
            "sip.ring_ms" => self.sip.ring_ms = v.int_in(0, 600_000)?,
            "sip.t1_ms" => self.sip.t1_ms = v.int_in(1, 60_000)?,
            "sip.t2_ms" => self.sip.t2_ms = v.int_in(1, 600_000)?,
            "sip.t4_ms" => self.sip.t4_ms = v.int_in(1, 600_000)?,
            "sip.external_ip" => {
                let s = v.string()?;
                self.sip.external_ip = if s.is_empty() {
                    None
                } else {
                    Some(v.parsed("an IP address")?)
                }
            }
            "sip.retry_after_s" => self.sip.retry_after_s = v.int_in(1, 86_400)? as u32,
            "sip.user_agent" => self.sip.user_agent = v.string()?,
            "sip.catch_all" => {
                self.sip.catch_all = match v.string_or_bool()?.as_str() {
                    "auto" => None,
                    "true" => Some(true),
                    "false" => Some(false),
                    other => {
                        return Err(
                            v.err(format!("expected true, false or \"auto\", got {other:?}"))
                        )
                    }
                }
            }
            "sip.trunks" => self.sip.trunks = trunks::trunks(&v)?,
            "media.rtp_ports" => self.media.rtp_ports = v.parsed_with(|s| s.parse())?,
            "media.rtp_timeout_s" => self.media.rtp_timeout_s = v.int_in(1, 86_400)?,
            "media.greeting" => {
                let s = v.string()?;
                self.media.greeting = (!s.is_empty()).then(|| PathBuf::from(s));
            }
            "media.record" => self.media.record = v.boolean()?,
            "media.workers" => self.media.workers = v.int_in(0, 256)? as usize,
            "media.worker_nice" => self.media.worker_nice = v.signed_in(-20, 19)? as i32,
            "media.vad" => self.media.vad = v.boolean()?,
            "media.onnxruntime" => self.media.onnxruntime = v.optional_path()?,
            "media.vad_model" => self.media.vad_model = v.optional_path()?,
            "media.vad_threshold" => self.media.vad_threshold = v.float_in(0.01, 0.99)?,
            "media.vad_min_speech_ms" => self.media.vad_min_speech_ms = v.int_in(0, 10_000)? as u32,
            "media.vad_min_silence_ms" => {
                self.media.vad_min_silence_ms = v.int_in(0, 10_000)? as u32
            }
            "media.vad_pad_ms" => self.media.vad_pad_ms = v.int_in(0, 1_000)? as u32,
            "media.silence_suppression" => self.media.silence_suppression = v.boolean()?,
            "media.keepalive_ms" => self.media.keepalive_ms = v.int_in(0, 300_000)?,
            "call.max_duration_s" => self.call.max_duration_s = v.int_in(0, 7 * 86_400)?,
            "call.drain_s" => self.call.drain_s = v.int_in(0, 86_400)?,
            "http.listen" => self.http.listen = v.parsed("an address like \"127.0.0.1:8080\"")?,
            "billing.heartbeat_s" => self.billing.heartbeat_s = v.int_in(1, 3600)?,
            "billing.final_unit_action" => {
                self.billing.final_unit_action = match v.string()?.as_str() {
                    "terminate" => FinalUnitAction::Terminate,
                    "allow" => FinalUnitAction::Allow,
                    other => {
                        return Err(v.err(format!(
                            "expected \"terminate\" or \"allow\", got {other:?}"
                        )))
                    }
                }
            }
            "billing.final_unit_notice" => self.billing.final_unit_notice = v.string()?,
            "database.url" => {
                let url = v.string()?;
                let known = ["sqlite:", "postgres:", "postgresql:"];
                if !url.is_empty() && !known.iter().any(|p| url.starts_with(p)) {
                    return Err(v.err(format!(
                        "expected a sqlite://… or postgres://… URL (or empty), got {url:?}"
                    )));
                }
                self.database.url = url;
            }
            "redis.url" => {
                let url = v.string()?;
                if url.starts_with("rediss:") {
                    return Err(v.err("TLS (rediss://) is not supported; use redis://"));
                }
                if !url.is_empty() {
                    let known = ["redis:", "redis+unix:", "unix:"];
                    if !known.iter().any(|p| url.starts_with(p)) {
                        return Err(
                            v.err(format!("expected a redis://… URL (or empty), got {url:?}"))
                        );
                    }
                    ::redis::Client::open(url.as_str())
                        .map_err(|e| v.err(format!("not a usable Redis URL: {e}")))?;
                }
                self.redis.url = url;
            }
            "redis.prefix" => self.redis.prefix = v.string()?,
            "redis.node_id" => {
                let id = v.string()?;
                let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
                if id.len() > 64 || !id.chars().all(ok) {
                    return Err(v.err(format!(
                        "expected up to 64 letters, digits, '-', '_' or '.', got {id:?}"
                    )));
                }
                self.redis.node_id = id;
            }
            "redis.ttl_s" => self.redis.ttl_s = v.int_in(3, 3600)?,
            "api.admin_key" => {
                let key = v.string()?;
                if !key.is_empty() && key.len() < crate::store::accounts::MIN_CONFIG_KEY_LEN {
                    return Err(v.err(
                        "expected at least 24 characters (or empty: one is made at first start)",
                    ));
                }
                self.api.admin_key = (!key.is_empty()).then_some(key);
            }
            _ if webrtc::set(&mut self.webrtc, key, &v)? => {}
            _ if text::set(&mut self.sms, &mut self.memory, key, &v)? => {}
            _ if self.ai.set(key, &v)? => {}
            _ => {
                let known: Vec<&str> = all_keys()
                    .filter(|k| {
                        let section = key.split_once('.').map(|(s, _)| s);
                        k.split_once('.').map(|(s, _)| s) == section
                    })
                    .collect();
                let hint = if known.is_empty() {
                    format!(" (known sections: {})", SECTIONS.join(", "))
                } else {
                    format!(" (known keys here: {})", known.join(", "))
                };
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    hint,
                });
            }
        }
        Ok(())
    }

    /// Cross-key rules that no single key can check.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.sip.t2_ms < self.sip.t1_ms {
            return Err(ConfigError::invalid(
                "sip.t2_ms",
                &Origin::Combined,
                format!(
                    "T2 ({} ms) must not be shorter than T1 ({} ms)",
                    self.sip.t2_ms, self.sip.t1_ms
                ),
            ));
        }
        for (key, path) in [
            ("media.onnxruntime", &self.media.onnxruntime),
            ("media.vad_model", &self.media.vad_model),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                return Err(ConfigError::invalid(
                    key,
                    &Origin::Combined,
                    format!(
                        "{} is not a readable file (scripts/fetch_models.sh fetches it)",
                        path.display()
                    ),
                ));
            }
        }
        if self.sms.twilio_account_sid.is_empty() != self.sms.twilio_auth_token.is_empty() {
            return Err(ConfigError::invalid(
                "sms.twilio_auth_token",
                &Origin::Combined,
                "sms.twilio_account_sid and sms.twilio_auth_token go together: set both or neither",
            ));
        }
        if let Some(greeting) = &self.media.greeting {
            if !greeting.is_file() {
                return Err(ConfigError::invalid(
                    "media.greeting",
                    &Origin::Combined,
                    format!("{} is not a readable file", greeting.display()),
                ));
            }
        }
        Ok(())
    }
}

/// Every key of the core sections, for env lookup and for "did you mean" hints (the agent
/// sections' keys are in [`agent::AGENT_KEYS`]). Keep in step with `Config::set`.
pub const KEYS: &[&str] = &[
    "data_dir",
    "sip.listen",
    "sip.max_calls",
    "sip.ring_ms",
    "sip.t1_ms",
    "sip.t2_ms",
    "sip.t4_ms",
    "sip.external_ip",
    "sip.retry_after_s",
    "sip.user_agent",
    "sip.catch_all",
    "sip.trunks",
    "media.rtp_ports",
    "media.rtp_timeout_s",
    "media.greeting",
    "media.record",
    "media.workers",
    "media.worker_nice",
    "media.vad",
    "media.onnxruntime",
    "media.vad_model",
    "media.vad_threshold",
    "media.vad_min_speech_ms",
    "media.vad_min_silence_ms",
    "media.vad_pad_ms",
    "media.silence_suppression",
    "media.keepalive_ms",
    "call.max_duration_s",
    "call.drain_s",
    "http.listen",
    "database.url",
    "redis.url",
    "redis.prefix",
    "redis.node_id",
    "redis.ttl_s",
    "api.admin_key",
    "billing.heartbeat_s",
    "billing.final_unit_action",
    "billing.final_unit_notice",
];

const SECTIONS: &[&str] = &[
    "sip", "media", "call", "http", "database", "api", "billing", "redis", "sms", "memory", "stt",
    "llm", "tts", "agent", "webrtc",
];

/// [`KEYS`] and the agent sections' [`agent::AGENT_KEYS`].
pub fn all_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .chain(text::TEXT_KEYS)
        .chain(webrtc::WEBRTC_KEYS)
        .chain(agent::AGENT_KEYS)
        .copied()
}

/// `sip.max_calls` -> `PARLEY_SIP_MAX_CALLS`.
pub fn env_name(key: &str) -> String {
    format!("PARLEY_{}", key.replace('.', "_").to_ascii_uppercase())
}

enum Origin {
    File,
    Env(String),
    Combined,
}

impl Origin {
    fn note(&self) -> String {
        match self {
            Origin::File | Origin::Combined => String::new(),
            Origin::Env(var) => format!(" (from environment variable {var})"),
        }
    }
}

enum Raw<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
}

struct Value<'a> {
    key: &'a str,
    raw: Raw<'a>,
    origin: &'a Origin,
}

impl Value<'_> {
    fn err(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.key, self.origin, reason)
    }

    fn string(&self) -> Result<String, ConfigError> {
        match &self.raw {
            Raw::Env(s) => Ok(s.to_string()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(other) => Err(self.err(format!(
                "expected a string, got {} {}",
                other.type_str(),
                other
            ))),
        }
    }

    /// A boolean or a string, as text (for keys that take `true`, `false` or a word).
    fn string_or_bool(&self) -> Result<String, ConfigError> {
        match &self.raw {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(b.to_string()),
            _ => self.string(),
        }
    }

    /// A non-negative integer in `min..=max` (min ≥ 0).
    fn int_in(&self, min: i64, max: i64) -> Result<u64, ConfigError> {
        Ok(self.signed_in(min.max(0), max)? as u64)
    }

    fn signed_in(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = match &self.raw {
            Raw::Env(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.err(format!("expected an integer, got {s:?}")))?,
            Raw::Toml(toml::Value::Integer(n)) => *n,
            Raw::Toml(other) => {
                return Err(self.err(format!(
                    "expected an integer, got {} {}",
                    other.type_str(),
                    other
                )))
            }
        };
        if n < min || n > max {
            return Err(self.err(format!("{n} is outside the allowed range {min}..={max}")));
        }
        Ok(n)
    }

    fn float_in(&self, min: f64, max: f64) -> Result<f64, ConfigError> {
        let x = match &self.raw {
            Raw::Env(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| self.err(format!("expected a number, got {s:?}")))?,
            Raw::Toml(toml::Value::Float(f)) => *f,
            Raw::Toml(toml::Value::Integer(n)) => *n as f64,
            Raw::Toml(other) => {
                return Err(self.err(format!(
                    "expected a number, got {} {}",
                    other.type_str(),
                    other
                )))
            }
        };
        if !(min..=max).contains(&x) {
            return Err(self.err(format!("{x} is outside the allowed range {min}..={max}")));
        }
        Ok(x)
    }

    fn optional_path(&self) -> Result<Option<PathBuf>, ConfigError> {
        let s = self.string()?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match &self.raw {
            Raw::Env(s) => match s.trim() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                other => Err(self.err(format!("expected true or false, got {other:?}"))),
            },
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(other) => Err(self.err(format!(
                "expected true or false, got {} {}",
                other.type_str(),
                other
            ))),
        }
    }

    fn parsed<T: std::str::FromStr>(&self, expected: &str) -> Result<T, ConfigError> {
        let s = self.string()?;
        s.trim()
            .parse()
            .map_err(|_| self.err(format!("expected {expected}, got {s:?}")))
    }

    /// A table of strings (TOML inline table, or `k=v,k=v` in the environment).
    fn string_map(&self) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
        let mut map = std::collections::BTreeMap::new();
        match &self.raw {
            Raw::Env(s) => {
                for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        self.err(format!("expected key=value pairs, got {pair:?}"))
                    })?;
                    map.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
            Raw::Toml(toml::Value::Table(t)) => {
                for (k, v) in t {
                    let v = v.as_str().ok_or_else(|| {
                        self.err(format!("{k}: expected a string, got {}", v.type_str()))
                    })?;
                    map.insert(k.clone(), v.to_string());
                }
            }
            Raw::Toml(other) => {
                return Err(self.err(format!("expected a table, got {}", other.type_str())))
            }
        }
        Ok(map)
    }

    /// An array of tables (TOML), or a JSON array (environment), as JSON values.
    fn json_array(&self) -> Result<Vec<serde_json::Value>, ConfigError> {
        let value = match &self.raw {
            Raw::Env(s) => serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| self.err(format!("expected a JSON array: {e}")))?,
            Raw::Toml(v) => serde_json::to_value(v).map_err(|e| self.err(e.to_string()))?,
        };
        match value {
            serde_json::Value::Array(items) => Ok(items),
            other => Err(self.err(format!("expected an array, got {other}"))),
        }
    }

    fn parsed_with<T>(&self, f: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        let s = self.string()?;
        f(s.trim()).map_err(|reason| self.err(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_are_safe() {
        assert_eq!(recording_name("1-2@127.0.0.1"), "1-2@127.0.0.1.wav");
        assert_eq!(recording_name("../../etc/passwd"), "_.._etc_passwd.wav");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.sip.listen.to_string(), "0.0.0.0:5060");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.media.rtp_ports.to_string(), "20000-29999");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.sip.max_calls, 1000);
        assert_eq!(c.media.rtp_timeout_s, 30);
    }

    #[test]
    fn database_and_api_keys_are_checked() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("PARLEY_DATABASE_URL", "postgres://u@127.0.0.1/db"),
                ("PARLEY_API_ADMIN_KEY", "a-long-enough-operator-key-123"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.url, "postgres://u@127.0.0.1/db");
        assert_eq!(
            c.api.admin_key.as_deref(),
            Some("a-long-enough-operator-key-123")
        );
        assert!(
            !format!("{:?}", c.api).contains("operator-key"),
            "never printed"
        );
        for (key, value) in [
            ("PARLEY_DATABASE_URL", "mysql://x"),
            ("PARLEY_API_ADMIN_KEY", "short"),
        ] {
            let err = Config::load_with_env(None, &env(&[(key, value)])).unwrap_err();
            let field = key
                .trim_start_matches("PARLEY_")
                .to_lowercase()
                .replacen('_', ".", 1);
            assert!(err.to_string().contains(&field), "{err}");
        }
    }

    #[test]
    fn redis_keys_are_checked() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.redis, RedisConfig::default());
        assert_eq!(c.redis.prefix, "parley:");
        let c = Config::load_with_env(
            None,
            &env(&[
                ("PARLEY_REDIS_URL", "redis://127.0.0.1:6379/2"),
                ("PARLEY_REDIS_PREFIX", "staging:"),
                ("PARLEY_REDIS_NODE_ID", "media-1"),
                ("PARLEY_REDIS_TTL_S", "9"),
                ("PARLEY_TEST_REDIS_URL", "redis://ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379/2");
        assert_eq!(c.redis.prefix, "staging:");
        assert_eq!(c.redis.node_id, "media-1");
        assert_eq!(c.redis.node_name(), "media-1");
        assert_eq!(c.redis.ttl_s, 9);
        // Unnamed, a node's records carry its host's name.
        let unnamed = RedisConfig::default();
        assert!(!unnamed.node_name().is_empty());
        assert_eq!(unnamed.node_name(), RedisConfig::default().node_name());
        for (key, value, why) in [
            ("PARLEY_REDIS_URL", "rediss://h", "TLS"),
            ("PARLEY_REDIS_URL", "http://h", "redis://"),
            ("PARLEY_REDIS_NODE_ID", "a b", "letters"),
            ("PARLEY_REDIS_TTL_S", "1", "outside"),
        ] {
            let e = Config::load_with_env(None, &env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(why), "{key}={value}: {e}");
        }
    }

    #[test]
    fn the_documented_example_file_parses() {
        let text = include_str!("../../sip-configs/parley.example.toml");
        Config::from_toml(text).unwrap();
    }

    #[test]
    fn file_values_apply() {
        let c = Config::from_toml(
            "data_dir = \"/tmp/x\"\n[sip]\nlisten = \"127.0.0.1:5070\"\nmax_calls = 7\n[media]\nrtp_ports = \"30000-30100\"\n[http]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.sip.listen.port(), 5070);
        assert_eq!(c.sip.max_calls, 7);
        assert_eq!(
            c.media.rtp_ports,
            PortRange {
                start: 30000,
                end: 30100
            }
        );
        assert_eq!(c.http.listen.port(), 9000);
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("PARLEY_SIP_LISTEN", "127.0.0.1:6000"),
                ("PARLEY_MEDIA_RTP_PORTS", "40000-40010"),
                ("PARLEY_DATA_DIR", "/var/lib/parley"),
                ("PARLEY_MEDIA_RECORD", "false"),
                ("PARLEY_TEST_DATABASE_URL", "postgres://ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sip.listen.port(), 6000);
        assert_eq!(c.media.rtp_ports.start, 40000);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/parley"));
        assert!(!c.media.record);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("[sip]\nlisen = \"0.0.0.0:5060\"\n").unwrap_err();
        assert!(e.to_string().contains("`sip.lisen`"), "{e}");
        assert!(
            e.to_string().contains("sip.listen"),
            "hint lists real keys: {e}"
        );
        let e = Config::from_toml("[sipp]\nlisten = \"0.0.0.0:5060\"\n").unwrap_err();
        assert!(e.to_string().contains("`sipp.listen`"), "{e}");
        let e = Config::from_toml("colour = 1\n").unwrap_err();
        assert!(e.to_string().contains("`colour`"), "{e}");
        let e = Config::load_with_env(None, &env(&[("PARLEY_SIP_LISTN", "x")])).unwrap_err();
        assert!(e.to_string().contains("PARLEY_SIP_LISTN"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_the_reason() {
        let cases = [
            (
                "[media]\nrtp_ports = \"30000-20000\"\n",
                "media.rtp_ports",
                "above",
            ),
            (
                "[media]\nrtp_ports = \"20000\"\n",
                "media.rtp_ports",
                "FIRST-LAST",
            ),
            (
                "[media]\nrtp_ports = \"20001-20002\"\n",
                "media.rtp_ports",
                "pair",
            ),
            ("[sip]\nlisten = \"nonsense\"\n", "sip.listen", "nonsense"),
            ("[sip]\nmax_calls = -1\n", "sip.max_calls", "outside"),
            ("[sip]\nmax_calls = \"ten\"\n", "sip.max_calls", "integer"),
            ("[sip]\nt1_ms = 5000\nt2_ms = 4000\n", "sip.t2_ms", "T1"),
            (
                "[media]\ngreeting = \"/no/such.wav\"\n",
                "media.greeting",
                "readable",
            ),
        ];
        for (text, key, why) in cases {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text:?} -> {e}");
            assert!(e.contains(why), "{text:?} -> {e}");
        }
        let e = Config::load_with_env(None, &env(&[("PARLEY_SIP_MAX_CALLS", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sip.max_calls") && e.contains("PARLEY_SIP_MAX_CALLS"),
            "{e}"
        );
    }

    #[test]
    fn every_key_has_an_env_name_and_is_settable() {
        for key in all_keys() {
            let mut c = Config::default();
            // A value of the wrong shape must fail with the key named, proving `set` knows it.
            let e = c
                .set(
                    key,
                    Raw::Toml(&toml::Value::Array(vec![toml::Value::Integer(1)])),
                    &Origin::File,
                )
                .unwrap_err();
            assert!(
                matches!(e, ConfigError::InvalidValue { .. }),
                "{key} is in KEYS but not handled by set(): {e}"
            );
            assert!(env_name(key).starts_with("PARLEY_"));
        }
    }
}
