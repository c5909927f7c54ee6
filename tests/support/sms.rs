//! Twilio's side of SMS webhooks for tests: the forms it posts, signed as it signs them
//! (X-Twilio-Signature over the public URL Parley is configured with), and a raw form POST.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::fakes::twilio::FakeTwilio;
use super::Parley;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-auth-token-for-tests";
/// Where Twilio believes Parley is (a proxy in front): signatures are over this URL.
pub const PUBLIC_URL: &str = "https://sms.parley.example";

/// `PARLEY_SMS_*` for sending through `twilio` (webhooks signed over [`PUBLIC_URL`]), plus
/// `extra` (which may override them).
pub fn sms_env(twilio: &FakeTwilio, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PARLEY_SMS_TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_string()),
        ("PARLEY_SMS_TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_string()),
        ("PARLEY_SMS_TWILIO_API_URL", twilio.base_url()),
        ("PARLEY_SMS_PUBLIC_URL", PUBLIC_URL.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The environment as [`super::Launch::env`] takes it.
pub fn as_env(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// POSTs a Twilio webhook to `path` with `params`, signed over `public_url` + `path`
/// (`public_url` empty: the URL Parley sees, `http://<its address>`). (status, body).
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
        parley::channels::sms::signature::expected(AUTH_TOKEN, &format!("{base}{path}"), &owned);
    post_form(p, path, &owned, Some(&signature))
}

/// Posts `params` to `path` signed as Twilio signs it.
pub fn post_signed(p: &Parley, path: &str, params: &[(String, String)]) -> (u16, String) {
    let signature = sign(path, params);
    post_form(p, path, params, Some(&signature))
}

/// The form Twilio posts for an incoming SMS (its documented parameters).
pub fn incoming_to(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", "NY"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", to),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn status_form(
    sid: &str,
    from: &str,
    to: &str,
    status: &str,
    error_code: Option<&str>,
) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(code) = error_code {
        form.push(("ErrorCode".into(), code.into()));
    }
    form
}

pub fn sign(path: &str, params: &[(String, String)]) -> String {
    parley::channels::sms::signature::expected(AUTH_TOKEN, &format!("{PUBLIC_URL}{path}"), params)
}

pub fn post_form(
    p: &Parley,
    path: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> (u16, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut s = TcpStream::connect(p.http_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: TwilioProxy/1.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        p.http_addr,
        body.len()
    );
    if let Some(sig) = signature {
        head.push_str(&format!("X-Twilio-Signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    super::parse_http_response(&raw).unwrap()
}
