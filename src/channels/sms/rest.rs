//! Sending SMS through Twilio's Programmable Messaging REST API:
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic auth
//! (AccountSid:AuthToken) and a form body (`To`, `From`, `Body`, `StatusCallback`).
//!
//! A failure is either worth another attempt ([`SendError::Retryable`]: no answer, 429, 5xx)
//! or final ([`SendError::Rejected`]: any other refusal, with Twilio's error code, e.g. 21211
//! for an invalid `To`). [`TwilioRest::send_with_retry`] retries the first kind with jittered
//! exponential backoff. Twilio takes no idempotency key on this endpoint, so a retry after a
//! timeout may send the message twice; a lost SMS is the worse outcome for a conversation.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use crate::providers::{body_excerpt, error_chain};

/// One attempt's bound, connection to last byte of the answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A client of one Twilio account.
#[derive(Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: String,
}

// By hand, so that the auth token never reaches a log.
impl fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRest")
            .field("messages_url", &self.messages_url)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// One SMS to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    /// E.164, e.g. `+14155550100`.
    pub to: String,
    /// A Twilio number of the account (E.164), or a Messaging Service / alphanumeric sender.
    pub from: String,
    pub body: String,
    /// Where Twilio posts the message's status changes (sent, delivered, failed, ...).
    pub status_callback: Option<String>,
}

/// What Twilio answered for an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The Message SID, `SM` + 32 hex digits.
    pub sid: String,
    /// Usually `queued` (or `accepted` through a Messaging Service).
    pub status: String,
    /// The segments Twilio counted, when it said.
    pub num_segments: Option<u32>,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No answer (connection failure, timeout: `status` is `None`), 429 or 5xx: another
    /// attempt may pass, not before `retry_after` when Twilio said so.
    #[error("Twilio did not take the message{}: {message}", http_status(.status))]
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Twilio refused the message (bad number, bad credentials, unverified sender, ...): the
    /// same request would be refused again.
    #[error("Twilio refused the message (HTTP {status}{}): {message}", error_code(.code))]
    Rejected {
        status: u16,
        /// Twilio's error code (https://www.twilio.com/docs/api/errors), when it gave one.
        code: Option<i64>,
        message: String,
    },
}

fn http_status(status: &Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn error_code(code: &Option<i64>) -> String {
    code.map(|c| format!(", Twilio error {c}"))
        .unwrap_or_default()
}

impl SendError {
    pub fn retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }
}

/// How [`TwilioRest::send_with_retry`] spaces its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// The ceiling of the first wait; it doubles with every further one.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1 after the first). Equal jitter: half
    /// of the ceiling `min(cap, base * 2^(attempt-1))`, plus a random part of the other half,
    /// so that senders failing together spread out yet every wait still backs off. Never
    /// shorter than Twilio's Retry-After, even above `cap`: asking earlier only earns another
    /// 429.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1 << doublings).min(self.cap);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rand::thread_rng().gen_range(0..=spread));
        (half + jitter).max(retry_after.unwrap_or_default())
    }
}

/// The Message resource Twilio answers with (only the fields used here).
#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: String,
    status: String,
    error_code: Option<i64>,
    error_message: Option<String>,
    /// A string ("1") in Twilio's answers; a number is taken too.
    num_segments: Option<serde_json::Value>,
}

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Debug, Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
    more_info: Option<String>,
}

impl TwilioRest {
    /// `base_url` is `https://api.twilio.com` in production (a fake's address in tests);
    /// `account_sid` is the account's `AC...` SID, which is also the Basic auth user.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
    ) -> TwilioRest {
        TwilioRest {
            http,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                base_url.trim_end_matches('/')
            ),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
        }
    }

    /// One attempt to send `sms`.
    pub async fn send(&self, sms: &OutgoingSms) -> Result<Sent, SendError> {
        // Built apart: the serializer is not Send, so it must not live across an await.
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("To", &sms.to)
                .append_pair("From", &sms.from)
                .append_pair("Body", &sms.body);
            if let Some(url) = &sms.status_callback {
                form.append_pair("StatusCallback", url);
            }
            form.finish()
        };
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(no_answer)?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.text().await.map_err(no_answer)?;
        if response_is_success(status) {
            accepted(status, &body)
        } else {
            Err(refused(status, retry_after, &body))
        }
    }

    /// Sends `sms`, retrying [`SendError::Retryable`] failures as `policy` says; also returns
    /// the attempts made.
    pub async fn send_with_retry(
        &self,
        sms: &OutgoingSms,
        policy: &RetryPolicy,
    ) -> (Result<Sent, SendError>, u32) {
        let max_attempts = policy.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.send(sms).await {
                Err(SendError::Retryable {
                    status,
                    retry_after,
                    message,
                }) if attempts < max_attempts => {
                    let wait = policy.delay(attempts, retry_after);
                    tracing::warn!(
                        attempt = attempts,
                        status,
                        wait_ms = wait.as_millis() as u64,
                        "Twilio send failed, retrying: {message}"
                    );
                    tokio::time::sleep(wait).await;
                }
                result => return (result, attempts),
            }
        }
    }
}

fn response_is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

fn no_answer(e: reqwest::Error) -> SendError {
    let message = if e.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else {
        error_chain(&e)
    };
    SendError::Retryable {
        status: None,
        retry_after: None,
        message,
    }
}

/// Retry-After in seconds (the form Twilio uses); an HTTP date is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

fn accepted(status: u16, body: &str) -> Result<Sent, SendError> {
    let message: MessageResource = serde_json::from_str(body).map_err(|e| {
        // Not retryable: Twilio said 2xx, so the message may well be on its way.
        SendError::Rejected {
            status,
            code: None,
            message: format!(
                "unreadable answer ({e}), the message may have been sent: {}",
                body_excerpt(body, 200)
            ),
        }
    })?;
    if matches!(message.status.as_str(), "failed" | "undelivered") {
        return Err(SendError::Rejected {
            status,
            code: message.error_code,
            message: message
                .error_message
                .unwrap_or_else(|| format!("message {} {}", message.sid, message.status)),
        });
    }
    let num_segments = message.num_segments.and_then(|n| match n {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    });
    Ok(Sent {
        sid: message.sid,
        status: message.status,
        num_segments,
    })
}

fn refused(status: u16, retry_after: Option<Duration>, body: &str) -> SendError {
    let twilio: Option<TwilioError> = serde_json::from_str(body).ok();
    let message = match &twilio {
        Some(TwilioError {
            message: Some(text),
            more_info,
            ..
        }) => match more_info {
            Some(link) => format!("{text} ({link})"),
            None => text.clone(),
        },
        _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
        _ => body_excerpt(body, 200),
    };
    if status == 429 || status >= 500 {
        SendError::Retryable {
            status: Some(status),
            retry_after,
            message,
        }
    } else {
        SendError::Rejected {
            status,
            code: twilio.and_then(|t| t.code),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "s3cret";

    /// Retries at once (well, within a millisecond), so the tests wait on nothing.
    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };

    /// A request as the fake server read it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        /// Names lower-cased.
        headers: Vec<(String, String)>,
        form: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn field(&self, name: &str) -> Option<&str> {
            self.form
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    struct Reply {
        status: u16,
        headers: &'static str,
        body: String,
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: "",
            body: body.to_string(),
        }
    }

    fn queued(sid: &str) -> Reply {
        let body = serde_json::json!({
            "sid": sid, "status": "queued", "num_segments": "1",
            "error_code": null, "error_message": null,
        });
        reply(201, &body.to_string())
    }

    fn twilio_error(status: u16, code: i64, message: &str) -> Reply {
        let body = serde_json::json!({
            "code": code, "message": message, "status": status,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        });
        reply(status, &body.to_string())
    }

    /// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 answering `replies` in
    /// order; returns its base URL and what it has read so far.
    async fn fake_twilio(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut replies = VecDeque::from(replies);
        tokio::spawn(async move {
            while let Some(reply) = replies.pop_front() {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut stream).await;
                log.lock().unwrap().push(request);
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n{}\r\n",
                    reply.status,
                    reply.body.len(),
                    reply.headers
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(reply.body.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    async fn read_request(stream: &mut TcpStream) -> Seen {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before its request's end");
            data.extend_from_slice(&chunk[..n]);
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut start = lines.next().unwrap().split(' ');
        let method = start.next().unwrap().to_string();
        let path = start.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while data.len() < head_end + 4 + length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before its body's end");
            data.extend_from_slice(&chunk[..n]);
        }
        let form = form_urlencoded::parse(&data[head_end + 4..])
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        Seen {
            method,
            path,
            headers,
            form,
        }
    }

    fn client(base: &str) -> TwilioRest {
        TwilioRest::new(reqwest::Client::new(), base, SID, TOKEN)
    }

    fn sms() -> OutgoingSms {
        OutgoingSms {
            to: "+14155550100".into(),
            from: "+14155550199".into(),
            body: "Your table for 2 is booked & confirmed: 19:30 😀".into(),
            status_callback: Some("https://parley.example/sms/status?x=1".into()),
        }
    }

    #[tokio::test]
    async fn the_request_carries_basic_auth_and_the_form() {
        let (base, seen) = fake_twilio(vec![queued("SM1"), queued("SM2")]).await;
        let twilio = client(&format!("{base}/"));
        twilio.send(&sms()).await.unwrap();
        let without_callback = OutgoingSms {
            status_callback: None,
            ..sms()
        };
        twilio.send(&without_callback).await.unwrap();

        let seen = seen.lock().unwrap().clone();
        let first = &seen[0];
        assert_eq!(first.method, "POST");
        assert_eq!(
            first.path,
            format!("/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
        assert_eq!(
            first.header("authorization"),
            Some(format!("Basic {credentials}").as_str())
        );
        assert_eq!(
            first.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(first.field("To"), Some("+14155550100"));
        assert_eq!(first.field("From"), Some("+14155550199"));
        assert_eq!(first.field("Body"), Some(sms().body.as_str()));
        assert_eq!(
            first.field("StatusCallback"),
            Some("https://parley.example/sms/status?x=1")
        );
        assert_eq!(first.form.len(), 4);
        assert_eq!(seen[1].field("StatusCallback"), None);
        assert_eq!(seen[1].form.len(), 3);
    }

    #[tokio::test]
    async fn a_503_is_retried_and_the_next_attempt_succeeds() {
        let (base, seen) = fake_twilio(vec![
            twilio_error(503, 20503, "Service Unavailable"),
            queued("SM0123456789abcdef0123456789abcdef"),
        ])
        .await;
        let (result, attempts) = client(&base).send_with_retry(&sms(), &FAST).await;
        assert_eq!(
            result,
            Ok(Sent {
                sid: "SM0123456789abcdef0123456789abcdef".into(),
                status: "queued".into(),
                num_segments: Some(1),
            })
        );
        assert_eq!(attempts, 2);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_400_is_rejected_with_twilios_code_and_not_retried() {
        let (base, seen) = fake_twilio(vec![
            twilio_error(400, 21211, "Invalid 'To' Phone Number: +1415555"),
            queued("SM1"),
        ])
        .await;
        let (result, attempts) = client(&base).send_with_retry(&sms(), &FAST).await;
        let Err(SendError::Rejected {
            status,
            code,
            message,
        }) = result
        else {
            panic!("expected a rejection, got {result:?}");
        };
        assert_eq!((status, code, attempts), (400, Some(21211), 1));
        assert!(message.contains("Invalid 'To' Phone Number"), "{message}");
        assert!(message.contains("docs/errors/21211"), "{message}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_429_carries_retry_after_and_is_retried() {
        let mut limited = twilio_error(429, 20429, "Too Many Requests");
        limited.headers = "Retry-After: 7\r\n";
        let mut limited_briefly = twilio_error(429, 20429, "Too Many Requests");
        limited_briefly.headers = "Retry-After: 0\r\n";
        let (base, _) = fake_twilio(vec![limited, limited_briefly, queued("SM1")]).await;
        let twilio = client(&base);

        let err = twilio.send(&sms()).await.unwrap_err();
        assert_eq!(
            err,
            SendError::Retryable {
                status: Some(429),
                retry_after: Some(Duration::from_secs(7)),
                message: "Too Many Requests (https://www.twilio.com/docs/errors/20429)".into(),
            }
        );
        let (result, attempts) = twilio.send_with_retry(&sms(), &FAST).await;
        assert_eq!(result.map(|s| s.sid), Ok("SM1".to_string()));
        assert_eq!(attempts, 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_given_up() {
        // A port that was just free: nothing listens there any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (result, attempts) = client(&format!("http://{addr}"))
            .send_with_retry(&sms(), &FAST)
            .await;
        assert_eq!(attempts, FAST.max_attempts);
        match result {
            Err(e @ SendError::Retryable { status: None, .. }) => assert!(e.retryable()),
            other => panic!("expected a retryable failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_5xx_without_twilios_json_is_retryable_with_an_excerpt() {
        let (base, _) = fake_twilio(vec![reply(502, "<html>Bad Gateway</html>")]).await;
        let err = client(&base).send(&sms()).await.unwrap_err();
        assert_eq!(
            err,
            SendError::Retryable {
                status: Some(502),
                retry_after: None,
                message: "<html>Bad Gateway</html>".into(),
            }
        );
        assert!(err.to_string().contains("(HTTP 502)"), "{err}");
    }

    #[tokio::test]
    async fn a_401_is_rejected() {
        let (base, _) = fake_twilio(vec![twilio_error(401, 20003, "Authenticate")]).await;
        let err = client(&base).send(&sms()).await.unwrap_err();
        assert!(!err.retryable());
        assert!(
            err.to_string()
                .starts_with("Twilio refused the message (HTTP 401, Twilio error 20003)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_success_is_not_retried() {
        let (base, _) = fake_twilio(vec![reply(201, "not json")]).await;
        let (result, attempts) = client(&base).send_with_retry(&sms(), &FAST).await;
        assert_eq!(attempts, 1);
        assert!(
            matches!(result, Err(SendError::Rejected { status: 201, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn delay_backs_off_with_equal_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
            let third = policy.delay(3, None);
            assert!(third >= Duration::from_secs(1) && third <= Duration::from_secs(2));
            let late = policy.delay(40, None);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        }
        let distinct: std::collections::HashSet<_> =
            (0..50).map(|_| policy.delay(3, None)).collect();
        assert!(distinct.len() > 5, "not jittered: {distinct:?}");
        let default = RetryPolicy::default();
        assert_eq!(
            (default.max_attempts, default.base, default.cap),
            (5, Duration::from_millis(500), Duration::from_secs(30))
        );
    }

    #[test]
    fn delay_is_never_below_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let wait = policy.delay(attempt, Some(Duration::from_secs(45)));
            assert_eq!(wait, Duration::from_secs(45));
        }
        assert!(policy.delay(1, Some(Duration::ZERO)) >= Duration::from_millis(250));
    }
}
