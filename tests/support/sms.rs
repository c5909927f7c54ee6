//! SMS in tests: the environment that points Parley's `[sms]` at a [`FakeTwilio`], and
//! Twilio's webhooks as Twilio would post them (form-encoded, with `X-Twilio-Signature`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::fakes::twilio::FakeTwilio;
use super::{parse_http_response, Parley};

/// The Account SID and auth token the tests configure (the SID has Twilio's shape:
/// `AC` and 32 hex digits, which the config checks).
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "test-auth-token";

/// `PARLEY_SMS_*` for sending through `twilio`, plus `extra`.
pub fn sms_env(twilio: &FakeTwilio, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PARLEY_SMS_TWILIO_ACCOUNT_SID".to_string(),
            TWILIO_SID.to_string(),
        ),
        (
            "PARLEY_SMS_TWILIO_AUTH_TOKEN".to_string(),
            TWILIO_TOKEN.to_string(),
        ),
        ("PARLEY_SMS_TWILIO_API_URL".to_string(), twilio.base_url()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The environment as [`super::Launch::env`] takes it.
pub fn as_env(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// POSTs a Twilio webhook to `path` with `params`, signed with [`TWILIO_TOKEN`] over
/// `public_url` + `path` (`public_url` empty: the URL Parley sees, `http://<its address>`).
/// Returns (status, body).
pub fn twilio_webhook(
    p: &Parley,
    public_url: &str,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, String) {
    let base = if public_url.is_empty() {
        format!("http://{}", p.http_addr)
    } else {
        public_url.to_string()
    };
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature =
        parley::channels::sms::signature::expected(TWILIO_TOKEN, &format!("{base}{path}"), &owned);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut s = TcpStream::connect_timeout(&p.http_addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        p.http_addr,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_http_response(&raw).unwrap()
}
