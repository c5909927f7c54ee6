//! `[webrtc]`: browser calls. Every browser call shares one UDP port (ICE-lite, DTLS-SRTP),
//! signalled over WHIP on the HTTP listener.

use std::net::IpAddr;

use super::{ConfigError, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct WebRtcConfig {
    /// Browser calls are accepted (`POST /v1/webrtc/whip`, the `/call` page).
    pub enabled: bool,
    /// The one UDP port every browser call's media uses (0: any free port, for tests).
    pub udp_port: u16,
    /// The address browsers reach that port at (the host candidate); unset: `sip.external_ip`,
    /// else the HTTP listener's address when it is not a wildcard, else 127.0.0.1.
    pub public_ip: Option<IpAddr>,
    /// Origins (`https://shop.example`) whose pages may call the WHIP endpoint (CORS); `*`
    /// allows any. Pages Parley serves itself need none.
    pub allowed_origins: Vec<String>,
    /// STUN/TURN servers handed to browsers (the WHIP response's `Link` headers).
    pub ice_servers: Vec<IceServer>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            enabled: true,
            udp_port: 50000,
            public_ip: None,
            allowed_origins: Vec::new(),
            ice_servers: Vec::new(),
        }
    }
}

/// One entry of `webrtc.ice_servers`, as `RTCIceServer` has it.
#[derive(Debug, Clone, PartialEq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:…`.
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

pub const WEBRTC_KEYS: &[&str] = &[
    "webrtc.enabled",
    "webrtc.udp_port",
    "webrtc.public_ip",
    "webrtc.allowed_origins",
    "webrtc.ice_servers",
];

/// Sets `key` when it is one of [`WEBRTC_KEYS`]; false for any other key.
pub(super) fn set(c: &mut WebRtcConfig, key: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
    match key {
        "webrtc.enabled" => c.enabled = v.boolean()?,
        "webrtc.udp_port" => c.udp_port = v.int_in(0, 65_535)? as u16,
        "webrtc.public_ip" => {
            let s = v.string()?;
            c.public_ip = if s.is_empty() {
                None
            } else {
                Some(v.parsed("an IP address")?)
            }
        }
        "webrtc.allowed_origins" => c.allowed_origins = origins(v)?,
        "webrtc.ice_servers" => c.ice_servers = ice_servers(v)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// A JSON array of strings in the environment, an array in TOML; each `scheme://host[:port]`
/// without a path, or `*`.
fn origins(v: &Value<'_>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (i, item) in v.json_array()?.into_iter().enumerate() {
        let s = item
            .as_str()
            .ok_or_else(|| v.err(format!("origin {i}: expected a string")))?
            .trim_end_matches('/')
            .to_string();
        let valid = s == "*"
            || ((s.starts_with("https://") || s.starts_with("http://"))
                && !s.split_once("://").is_some_and(|(_, rest)| {
                    rest.is_empty() || rest.contains(['/', ' ', '?', '#'])
                }));
        if !valid {
            return Err(v.err(format!(
                "origin {i}: expected \"https://host[:port]\" (no path) or \"*\", got {s:?}"
            )));
        }
        out.push(s);
    }
    Ok(out)
}

fn ice_servers(v: &Value<'_>) -> Result<Vec<IceServer>, ConfigError> {
    let mut out = Vec::new();
    for (i, item) in v.json_array()?.iter().enumerate() {
        let at = |why: &str| v.err(format!("ice server {i}: {why}"));
        let obj = item
            .as_object()
            .ok_or_else(|| at("expected a table with urls (and username, credential)"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["urls", "username", "credential"].contains(&k.as_str()))
        {
            return Err(at(&format!(
                "{k}: unknown field (urls, username, credential)"
            )));
        }
        let urls: Vec<String> = match obj.get("urls") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|u| u.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| at("urls: expected strings"))?,
            _ => return Err(at("urls: required (a string or an array of strings)")),
        };
        if urls.is_empty() {
            return Err(at("urls: empty"));
        }
        for u in &urls {
            if !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|p| u.starts_with(p))
                || u.contains([' ', '\r', '\n', '>', '"'])
            {
                return Err(at(&format!(
                    "urls: expected stun:, turn: or turns: URLs, got {u:?}"
                )));
            }
        }
        let text = |field: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(field) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) if !s.contains(['"', '\r', '\n']) => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(at(&format!("{field}: expected a string without quotes"))),
            }
        };
        let (username, credential) = (text("username")?, text("credential")?);
        let turn = urls.iter().any(|u| u.starts_with("turn"));
        if turn && (username.is_none() || credential.is_none()) {
            return Err(at("a TURN server needs username and credential"));
        }
        out.push(IceServer {
            urls,
            username,
            credential,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert!(c.webrtc.enabled);
        assert_eq!(c.webrtc.udp_port, 50000);
        assert!(c.webrtc.allowed_origins.is_empty() && c.webrtc.ice_servers.is_empty());
    }

    #[test]
    fn lists_come_as_json_arrays_in_the_environment() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("PARLEY_WEBRTC_UDP_PORT", "3479"),
                ("PARLEY_WEBRTC_PUBLIC_IP", "203.0.113.7"),
                (
                    "PARLEY_WEBRTC_ALLOWED_ORIGINS",
                    r#"["https://shop.example", "http://localhost:3000/"]"#,
                ),
                (
                    "PARLEY_WEBRTC_ICE_SERVERS",
                    r#"[{"urls": "stun:stun.example:3478"},
                        {"urls": ["turn:turn.example:3478?transport=udp"], "username": "u", "credential": "p"}]"#,
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.webrtc.udp_port, 3479);
        assert_eq!(c.webrtc.public_ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(
            c.webrtc.allowed_origins,
            ["https://shop.example", "http://localhost:3000"]
        );
        assert_eq!(c.webrtc.ice_servers.len(), 2);
        assert_eq!(c.webrtc.ice_servers[1].username.as_deref(), Some("u"));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (var, value, needle) in [
            (
                "PARLEY_WEBRTC_ALLOWED_ORIGINS",
                r#"["shop.example"]"#,
                "origin 0",
            ),
            ("PARLEY_WEBRTC_ALLOWED_ORIGINS", "https://a", "JSON array"),
            (
                "PARLEY_WEBRTC_ICE_SERVERS",
                r#"[{"urls": "turn:t.example"}]"#,
                "username and credential",
            ),
            (
                "PARLEY_WEBRTC_ICE_SERVERS",
                r#"[{"urls": "http://x"}]"#,
                "stun:",
            ),
            ("PARLEY_WEBRTC_PUBLIC_IP", "example.com", "IP address"),
        ] {
            let err = Config::load_with_env(None, &env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{var}={value}: {err}");
            assert!(err.contains("webrtc."), "{err}");
        }
    }

    #[test]
    fn toml_takes_tables() {
        let c = Config::from_toml(
            r#"
[webrtc]
enabled = false
allowed_origins = ["*"]
ice_servers = [{ urls = ["stun:stun.example:3478"] }]
"#,
        )
        .unwrap();
        assert!(!c.webrtc.enabled);
        assert_eq!(c.webrtc.allowed_origins, ["*"]);
        assert_eq!(c.webrtc.ice_servers[0].urls, ["stun:stun.example:3478"]);
    }
}
