//! `sip.trunks`: the carriers' SIP trunks Parley places calls through (`POST /v1/calls`) and
//! recognises calls from (their source address), each with an optional account and agent
//! that answer its calls to numbers no account has configured.

use super::agent::Secret;
use super::{ConfigError, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct TrunkConfig {
    /// How the API and the call records name it.
    pub name: String,
    /// The carrier's SIP proxy: `host` or `host:port` (5060 by default).
    pub address: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Digest credentials for the carrier's challenges.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The caller ID of calls placed through it (E.164), unless the request names one.
    pub from: Option<String>,
    /// Calls from the trunk to numbers no account has: this account's, with this agent.
    pub account_id: Option<String>,
    pub agent_id: Option<String>,
}

impl TrunkConfig {
    /// The SIP URI to INVITE `number` at through this trunk.
    pub fn target(&self, number: &str) -> String {
        let transport = if self.transport == "tcp" {
            ";transport=tcp"
        } else {
            ""
        };
        format!("sip:{number}@{}{transport}", self.address)
    }

    /// `host:port` to resolve (the default port when the address has none).
    pub fn host_port(&self) -> String {
        let bracketed_v6 = self.address.starts_with('[');
        let has_port = if bracketed_v6 {
            self.address.contains("]:")
        } else {
            self.address.contains(':')
        };
        if has_port {
            self.address.clone()
        } else {
            format!("{}:5060", self.address)
        }
    }
}

const FIELDS: &[&str] = &[
    "name",
    "address",
    "transport",
    "username",
    "password",
    "from",
    "account_id",
    "agent_id",
];

/// `sip.trunks`: an array of tables in TOML, a JSON array in the environment.
pub(super) fn trunks(v: &Value<'_>) -> Result<Vec<TrunkConfig>, ConfigError> {
    let items: Vec<serde_json::Value> = v.json_array()?;
    let mut out: Vec<TrunkConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str, why: &str| v.err(format!("trunk {i}: {field}: {why}"));
        let obj = item
            .as_object()
            .ok_or_else(|| at("(entry)", "expected a table"))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(at(k, &format!("unknown field ({})", FIELDS.join(", "))));
        }
        let text = |field: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(field) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(at(field, "expected a string")),
            }
        };
        let name = text("name")?.ok_or_else(|| at("name", "required"))?;
        if name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(at("name", "1 to 64 letters, digits, _ or -"));
        }
        if out.iter().any(|t| t.name == name) {
            return Err(at("name", "another trunk has this name"));
        }
        let address = text("address")?.ok_or_else(|| at("address", "required"))?;
        if address.contains(['@', ';', ' ', '/']) || address.starts_with("sip:") {
            return Err(at(
                "address",
                "expected host or host:port, like \"sip.carrier.example:5060\"",
            ));
        }
        let transport = text("transport")?.unwrap_or_else(|| "udp".into());
        if !["udp", "tcp"].contains(&transport.as_str()) {
            return Err(at("transport", "expected \"udp\" or \"tcp\""));
        }
        let from = match text("from")? {
            Some(f) => Some(
                crate::store::directory::e164(&f)
                    .ok_or_else(|| at("from", "expected an E.164 number like \"+15551230000\""))?,
            ),
            None => None,
        };
        out.push(TrunkConfig {
            name,
            address,
            transport,
            username: text("username")?,
            password: text("password")?.map(Secret::new),
            from,
            account_id: text("account_id")?,
            agent_id: text("agent_id")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn trunks_from_toml_and_from_json() {
        let c = Config::from_toml(
            r#"
[[sip.trunks]]
name = "carrier"
address = "sip.carrier.example"
username = "acme"
password = "s3cret"
from = "+1 555 123 0000"
"#,
        )
        .unwrap();
        let t = &c.sip.trunks[0];
        assert_eq!(t.name, "carrier");
        assert_eq!(t.transport, "udp");
        assert_eq!(t.from.as_deref(), Some("+15551230000"));
        assert_eq!(t.host_port(), "sip.carrier.example:5060");
        assert_eq!(
            t.target("+15551234567"),
            "sip:+15551234567@sip.carrier.example"
        );
        assert!(
            !format!("{t:?}").contains("s3cret"),
            "the password stays out of logs"
        );
        let env = vec![(
            "PARLEY_SIP_TRUNKS".to_string(),
            r#"[{"name":"b","address":"127.0.0.1:5070","transport":"tcp"}]"#.to_string(),
        )];
        let c = Config::load_with_env(None, &env).unwrap();
        assert_eq!(c.sip.trunks[0].host_port(), "127.0.0.1:5070");
        assert_eq!(
            c.sip.trunks[0].target("+1555"),
            "sip:+1555@127.0.0.1:5070;transport=tcp"
        );
        for (bad, why) in [
            (r#"[{"address":"x"}]"#, "name: required"),
            (r#"[{"name":"a"}]"#, "address: required"),
            (r#"[{"name":"a","address":"sip:x@y"}]"#, "address"),
            (
                r#"[{"name":"a","address":"x","transport":"tls"}]"#,
                "transport",
            ),
            (r#"[{"name":"a","address":"x","from":"alice"}]"#, "from"),
            (r#"[{"name":"a","address":"x","port":1}]"#, "unknown field"),
            (
                r#"[{"name":"a","address":"x"},{"name":"a","address":"y"}]"#,
                "another trunk",
            ),
        ] {
            let env = vec![("PARLEY_SIP_TRUNKS".to_string(), bad.to_string())];
            let e = Config::load_with_env(None, &env).unwrap_err().to_string();
            assert!(e.contains("sip.trunks") && e.contains(why), "{bad} -> {e}");
        }
    }
}
