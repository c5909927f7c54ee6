//! Browser calls' HTTP side against the real binary: `POST /v1/webrtc/tokens` (call tokens,
//! stored hashed), the WHIP endpoint's checks (`POST /v1/webrtc/whip`: the bearer, the
//! content type, the size), `DELETE`/`OPTIONS`/`PATCH` on WHIP sessions, CORS, and
//! `webrtc.enabled = false`. Token and bearer tests run on SQLite and, when
//! `PARLEY_TEST_DATABASE_URL` names one, on PostgreSQL too; the store's own token calls are
//! checked on both backends directly.
//!
//! Two tests need the call layer (`BrowserCalls::start`) to parse offers, and fail until it
//! does: `pending_call_layer_a_malformed_offer_is_400` and
//! `pending_call_layer_a_video_only_offer_is_406`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::stores::{drop_schema, on_each_backend, pg_schema};
use support::*;

/// Every test's Parley takes any free port for browser calls' media.
const ENV: &[(&str, &str)] = &[("PARLEY_WEBRTC_UDP_PORT", "0")];

/// A browser's offer as Chrome makes it (audio, Opus), its candidate inline.
const AUDIO_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host generation 0\r\n\
a=end-of-candidates\r\n\
a=ice-ufrag:Xk3v\r\n\
a=ice-pwd:wJ9rQm2bT7yLp4sZc8vN1dHf\r\n\
a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3A:5D:D1:0F:E9:4C:4C:30:C3:2E:7D:2B\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=msid:- audio0\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n";

/// The same offer with video only (VP8): nothing for a voice agent.
const VIDEO_OFFER: &str = "v=0\r\n\
o=- 4611731400430051337 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host generation 0\r\n\
a=ice-ufrag:Xk3v\r\n\
a=ice-pwd:wJ9rQm2bT7yLp4sZc8vN1dHf\r\n\
a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3A:5D:D1:0F:E9:4C:4C:30:C3:2E:7D:2B\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n";

// ---------------------------------------------------------------------------------------------
// Raw HTTP with the answer's headers

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }

    /// The JSON error's code.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: parley-tests\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let end = find(&raw, b"\r\n\r\n").expect("the end of the headers");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = find(rest, b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /v1/webrtc/whip` with `token` (when given), `content_type` and `offer`, plus `extra`
/// headers.
fn whip(
    p: &Parley,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    offer: &[u8],
    extra: &[(&str, &str)],
) -> Answer {
    let auth = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", content_type)];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    headers.extend_from_slice(extra);
    request(p.http_addr, "POST", path, &headers, offer)
}

fn mint(p: &Parley, key: &str, body: Value, extra: &[(&str, &str)]) -> Answer {
    let auth = bearer(key);
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    request(
        p.http_addr,
        "POST",
        "/v1/webrtc/tokens",
        &headers,
        body.to_string().as_bytes(),
    )
}

/// A minted token (201 asserted).
fn token(p: &Parley, key: &str, body: Value) -> String {
    let a = mint(p, key, body, &[]);
    assert_eq!(a.status, 201, "{a:?}");
    a.json()["token"].as_str().unwrap().to_string()
}

fn assert_refused(a: &Answer, status: u16, field: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.json()["error"]["field"], field, "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// Servers on each backend, and their database

/// A Parley with the operator's key, and a URL of its database for the test's own queries.
struct Server {
    p: Parley,
    root: String,
    db: String,
    /// The PostgreSQL schema to drop afterwards: (base URL, schema).
    pg: Option<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg.take() {
            self.p.stop(Duration::from_secs(5));
            block_on(drop_schema(&base, &schema));
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One server on SQLite, and one on PostgreSQL when `PARLEY_TEST_DATABASE_URL` is set.
fn on_each_server(test: &str, check: impl Fn(&Server)) {
    let p = Parley::start(ENV);
    let root = p.printed_admin_key();
    let db = format!("sqlite://{}", p.data_dir.join("parley.db").display());
    check(&Server {
        p,
        root,
        db,
        pg: None,
    });
    match std::env::var("PARLEY_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let (url, schema) = block_on(pg_schema(&base));
            let mut env = ENV.to_vec();
            env.push(("PARLEY_DATABASE_URL", &url));
            let p = Parley::start(&env);
            let root = p.printed_admin_key();
            check(&Server {
                p,
                root,
                db: url.clone(),
                pg: Some((base.clone(), schema)),
            });
        }
        _ => eprintln!("{test}: PARLEY_TEST_DATABASE_URL not set: PostgreSQL skipped"),
    }
}

/// The text columns of `call_tokens`, one row each.
fn token_rows(db: &str) -> Vec<Vec<Option<String>>> {
    block_on(async {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(db).await.unwrap();
        let rows =
            sqlx::query("SELECT hash, account_id, contact_id, address, agent_id FROM call_tokens")
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.iter()
            .map(|r| {
                (0..5)
                    .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                    .collect()
            })
            .collect()
    })
}

/// Makes every call token expired a second ago.
fn expire_tokens(db: &str) {
    block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(db).await.unwrap();
        let now = parley::store::now_ms();
        let done = sqlx::query(&format!(
            "UPDATE call_tokens SET expires_at = {}",
            now - 1_000
        ))
        .execute(&pool)
        .await
        .unwrap();
        assert!(done.rows_affected() > 0);
    });
}

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Call tokens

#[test]
fn call_tokens_are_minted_checked_and_stored_hashed() {
    on_each_server("call_tokens_are_minted_checked_and_stored_hashed", |s| {
        let p = &s.p;
        let (acc, key) = p.tenant(&s.root, "Clinic", None, "write");
        let (_, reader) = p.tenant(&s.root, "Reader", None, "read");
        let (other, other_key) = p.tenant(&s.root, "Other", None, "write");

        // Refusals name their field, as the chat tokens' do.
        let m = |body: Value| mint(p, &key, body, &[]);
        assert_refused(&m(json!({})), 422, "contact");
        assert_refused(&m(json!({"contact": "v-1", "ttl_s": 59})), 422, "ttl_s");
        assert_refused(&m(json!({"contact": "v-1", "ttl_s": 86_401})), 422, "ttl_s");
        assert_refused(&m(json!({"contact": "+1 555 CALL"})), 422, "contact");
        assert_refused(&m(json!({"contact": "v-1", "room": 1})), 422, "room");
        assert_refused(
            &m(json!({"contact": "v-1", "agent_id": "agt_nope"})),
            422,
            "agent_id",
        );
        let body = json!({"name": "Theirs"}).to_string();
        let (_, theirs) = p.api("POST", "/v1/agents", &other_key, &[], Some(&body));
        assert_refused(
            &m(json!({"contact": "v-1", "agent_id": theirs["id"]})),
            422,
            "agent_id",
        );
        let a = m(json!({"contact": "v-1", "account_id": other}));
        assert_eq!(a.status, 404, "another account's: {a:?}");
        let a = mint(p, &reader, json!({"contact": "v-1"}), &[]);
        assert_eq!((a.status, a.code()), (403, "forbidden".into()), "{a:?}");
        let a = mint(p, "pk_nope_nope", json!({"contact": "v-1"}), &[]);
        assert_eq!(a.status, 401, "{a:?}");
        let a = request(p.http_addr, "POST", "/v1/webrtc/tokens", &[], b"{}");
        assert_eq!(a.status, 401, "{a:?}");
        assert!(token_rows(&s.db).is_empty());

        // A token for a visitor, with its agent, behind a TLS proxy.
        let body = json!({"name": "Front desk", "prompt": "Be brief."}).to_string();
        let (status, agent) = p.api("POST", "/v1/agents", &key, &[], Some(&body));
        assert_eq!(status, 201, "{agent}");
        let agent = agent["id"].as_str().unwrap();
        let before = jiff::Timestamp::now();
        let body = json!({"contact": "visitor-7", "agent_id": agent, "ttl_s": 600});
        let a = mint(p, &key, body, &[("X-Forwarded-Proto", "https")]);
        assert_eq!(a.status, 201, "{a:?}");
        let minted = a.json();
        let first = minted["token"].as_str().unwrap().to_string();
        assert!(first.starts_with("pwt_") && first.len() > 30, "{minted}");
        assert_eq!(
            minted["url"],
            format!("https://{}/call?token={first}", p.http_addr)
        );
        let lasts = time(&minted["expires_at"]).duration_since(before);
        assert!(
            lasts > jiff::SignedDuration::from_secs(590)
                && lasts <= jiff::SignedDuration::from_secs(601),
            "{minted}"
        );
        let (status, visitor) = p.api("GET", "/v1/contacts/web:visitor-7", &key, &[], None);
        assert_eq!(status, 200, "{visitor}");
        assert_eq!(minted["contact_id"], visitor["id"]);
        assert_eq!(visitor["kind"], "web");

        // The default lifetime, over plain HTTP; a number joins that number's contact.
        let before = jiff::Timestamp::now();
        let a = mint(p, &key, json!({"contact": "+1 (555) 765-4321"}), &[]);
        assert_eq!(a.status, 201, "{a:?}");
        let by_phone = a.json();
        let second = by_phone["token"].as_str().unwrap().to_string();
        assert_eq!(
            by_phone["url"],
            format!("http://{}/call?token={second}", p.http_addr)
        );
        let lasts = time(&by_phone["expires_at"]).duration_since(before);
        assert!(
            lasts > jiff::SignedDuration::from_secs(890)
                && lasts <= jiff::SignedDuration::from_secs(901),
            "{by_phone}"
        );
        let (_, phone) = p.api("GET", "/v1/contacts/%2B15557654321", &key, &[], None);
        assert_eq!(by_phone["contact_id"], phone["id"], "{phone}");

        // The operator's key mints for any account.
        let a = mint(
            p,
            &s.root,
            json!({"contact": "v-2", "account_id": acc}),
            &[],
        );
        assert_eq!(a.status, 201, "{a:?}");
        let third = a.json()["token"].as_str().unwrap().to_string();

        // The database holds the tokens' hashes, never the tokens.
        let rows = token_rows(&s.db);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let hashes: Vec<String> = [&first, &second, &third]
            .iter()
            .map(|t| hex::encode(Sha256::digest(t.as_bytes())))
            .collect();
        for row in &rows {
            assert!(hashes.contains(row[0].as_ref().unwrap()), "{row:?}");
            for t in [&first, &second, &third] {
                let secret = &t["pwt_".len()..];
                assert!(
                    row.iter().flatten().all(|v| !v.contains(secret)),
                    "a token in the database: {row:?}"
                );
            }
            assert_eq!(row[1].as_deref(), Some(acc.as_str()));
        }
        let visitor_row = rows
            .iter()
            .find(|r| r[0].as_deref() == Some(hashes[0].as_str()))
            .unwrap();
        assert_eq!(visitor_row[3].as_deref(), Some("web:visitor-7"));
        assert_eq!(visitor_row[4].as_deref(), Some(agent));
    });
}

/// The store's side on both backends: grants, expiry, and the clearing of old tokens.
#[tokio::test]
async fn call_grants_in_the_store() {
    use parley::store::now_ms;
    on_each_backend(|store, _| async move {
        let acc = store.create_account("Bakery").await.unwrap().id;
        let contact = store.contact_for(&acc, "web:v-1").await.unwrap();
        let expires = now_ms() + 60_000;
        let token = store
            .mint_call_token(&acc, &contact.id, &contact.address, None, expires)
            .await
            .unwrap();
        let grant = store.call_grant(&token).await.unwrap().expect("a grant");
        assert_eq!(
            (
                grant.account_id.as_str(),
                grant.contact_id.as_str(),
                grant.address.as_str()
            ),
            (acc.as_str(), contact.id.as_str(), "web:v-1")
        );
        assert_eq!((grant.agent_id, grant.expires_at), (None, expires));
        assert!(store
            .call_grant(&format!("{token}x"))
            .await
            .unwrap()
            .is_none());
        assert!(store.call_grant("pk_whatever").await.unwrap().is_none());

        // An expired token is still known (refused as expired) for a day, then cleared.
        let lapsed = store
            .mint_call_token(&acc, &contact.id, "web:v-1", None, now_ms() - 1_000)
            .await
            .unwrap();
        let grant = store.call_grant(&lapsed).await.unwrap().expect("kept");
        assert!(grant.expired(now_ms()));
        let old = store
            .mint_call_token(&acc, &contact.id, "web:v-1", None, now_ms() - 90_000_000)
            .await
            .unwrap();
        assert!(store.call_grant(&old).await.unwrap().is_some());
        store
            .mint_call_token(&acc, &contact.id, "web:v-1", None, expires)
            .await
            .unwrap();
        assert!(store.call_grant(&old).await.unwrap().is_none(), "cleared");
        assert!(store.call_grant(&lapsed).await.unwrap().is_some());
        assert!(store.call_grant(&token).await.unwrap().is_some());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// WHIP

#[test]
fn whip_checks_the_bearer_the_content_type_and_the_size() {
    on_each_server(
        "whip_checks_the_bearer_the_content_type_and_the_size",
        |s| {
            let p = &s.p;
            let (_, key) = p.tenant(&s.root, "Clinic", None, "write");
            let (_, reader) = p.tenant(&s.root, "Reader", None, "read");
            let call = token(p, &key, json!({"contact": "visitor-1"}));
            let offer = AUDIO_OFFER.as_bytes();
            let path = "/v1/webrtc/whip";

            // No bearer, or one nobody made: 401 with the challenge.
            for t in [None, Some("pwt_unknown"), Some("pk_nope_nope"), Some("x")] {
                let a = whip(p, path, t, "application/sdp", offer, &[]);
                assert_eq!(
                    (a.status, a.code()),
                    (401, "unauthorized".into()),
                    "{t:?}: {a:?}"
                );
                assert!(
                    a.header("www-authenticate")
                        .is_some_and(|v| v.starts_with("Bearer")),
                    "{a:?}"
                );
            }
            let a = request(
                p.http_addr,
                "POST",
                path,
                &[
                    ("Authorization", "Basic dXNlcjpwYXNz"),
                    ("Content-Type", "application/sdp"),
                ],
                offer,
            );
            assert_eq!(a.status, 401, "{a:?}");
            // A read-only key may not start calls.
            let a = whip(p, path, Some(&reader), "application/sdp", offer, &[]);
            assert_eq!((a.status, a.code()), (403, "forbidden".into()), "{a:?}");

            // The offer must be application/sdp, and at most 20 KiB.
            for (t, content_type) in [
                (&call, "application/json"),
                (&call, "text/plain"),
                (&key, "application/x-www-form-urlencoded"),
            ] {
                let a = whip(p, path, Some(t), content_type, offer, &[]);
                assert_eq!(a.status, 415, "{content_type}: {a:?}");
                assert!(a.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("application/sdp")));
                assert_eq!(a.header("accept-post"), Some("application/sdp"), "{a:?}");
            }
            let mut big = AUDIO_OFFER.to_string();
            while big.len() <= 30_000 {
                big.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
            }
            for t in [&call, &key] {
                let a = whip(p, path, Some(t), "application/sdp", big.as_bytes(), &[]);
                assert_eq!((a.status, a.code()), (413, "too_large".into()), "{a:?}");
            }

            // A call token names its own account, agent and contact; a key's are checked.
            let a = whip(
                p,
                &format!("{path}?agent_id=agt_x"),
                Some(&call),
                "application/sdp",
                offer,
                &[],
            );
            assert_refused(&a, 422, "agent_id");
            for (query, field) in [
                ("agent_id=agt_nope", "agent_id"),
                ("contact=%2B1%20555%20CALL", "contact"),
            ] {
                let a = whip(
                    p,
                    &format!("{path}?{query}"),
                    Some(&key),
                    "application/sdp",
                    offer,
                    &[],
                );
                assert_refused(&a, 422, field);
            }
            let a = whip(
                p,
                &format!("{path}?account_id=acc_other"),
                Some(&key),
                "application/sdp",
                offer,
                &[],
            );
            assert_eq!(a.status, 404, "{a:?}");

            // An expired token: 403, saying so. It may still end its account's calls.
            expire_tokens(&s.db);
            let a = whip(p, path, Some(&call), "application/sdp", offer, &[]);
            assert_eq!((a.status, a.code()), (403, "token_expired".into()), "{a:?}");
            assert!(
                a.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("expired")),
                "{a:?}"
            );
            let auth = bearer(&call);
            let a = request(
                p.http_addr,
                "DELETE",
                "/v1/webrtc/whip/cdr_nope",
                &[("Authorization", &auth)],
                b"",
            );
            assert_eq!((a.status, a.code()), (404, "not_found".into()), "{a:?}");
        },
    );
}

/// An offer past the checks reaches the call layer: with a call token and with a key, the
/// answer is the call's (201 with the SDP answer and its session), or the call layer's
/// refusal with its reason, never one of the HTTP checks'.
#[test]
fn a_checked_offer_reaches_the_call_layer() {
    let mut env = ENV.to_vec();
    env.push((
        "PARLEY_WEBRTC_ICE_SERVERS",
        r#"[{"urls": ["stun:stun.example:3478", "stun:stun2.example:3478"]},
            {"urls": "turn:turn.example:3478", "username": "u1", "credential": "s3cret"}]"#,
    ));
    let p = Parley::start(&env);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let call = token(&p, &key, json!({"contact": "visitor-1"}));
    for t in [&call, &key] {
        let a = whip(
            &p,
            "/v1/webrtc/whip?",
            Some(t),
            "application/sdp; charset=utf-8",
            AUDIO_OFFER.as_bytes(),
            &[],
        );
        eprintln!("the call layer answered {}", a.status);
        assert!(
            ![401, 403, 404, 413, 415, 422].contains(&a.status),
            "refused by the HTTP checks: {a:?}"
        );
        if a.status == 201 {
            assert_eq!(a.header("content-type"), Some("application/sdp"), "{a:?}");
            assert!(a.body.starts_with("v=0"), "{a:?}");
            let location = a.header("location").expect("Location").to_string();
            assert!(location.starts_with("/v1/webrtc/whip/"), "{a:?}");
            assert_eq!(
                a.all("link"),
                [
                    r#"<stun:stun.example:3478>; rel="ice-server""#,
                    r#"<stun:stun2.example:3478>; rel="ice-server""#,
                    r#"<turn:turn.example:3478>; rel="ice-server"; username="u1"; credential="s3cret"; credential-type="password""#,
                ],
                "{a:?}"
            );
            let auth = bearer(t);
            let bye = request(
                p.http_addr,
                "DELETE",
                &location,
                &[("Authorization", &auth)],
                b"",
            );
            assert_eq!(bye.status, 200, "{bye:?}");
        } else {
            let message = a.json()["error"]["message"].as_str().map(str::to_string);
            assert!(message.is_some_and(|m| !m.is_empty()), "{a:?}");
            if a.status == 503 {
                assert!(a.header("retry-after").is_some(), "{a:?}");
            }
        }
    }
}

/// PENDING THE CALL LAYER (`BrowserCalls::start` parsing offers): fails until then.
#[test]
fn pending_call_layer_a_malformed_offer_is_400() {
    let p = Parley::start(ENV);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let call = token(&p, &key, json!({"contact": "visitor-1"}));
    let broken = b"v=0\r\nthis is not an SDP offer\r\nm=audio\r\n";
    let a = whip(
        &p,
        "/v1/webrtc/whip",
        Some(&call),
        "application/sdp",
        broken,
        &[],
    );
    assert_eq!((a.status, a.code()), (400, "bad_sdp".into()), "{a:?}");
}

/// PENDING THE CALL LAYER (`BrowserCalls::start` parsing offers): fails until then.
#[test]
fn pending_call_layer_a_video_only_offer_is_406() {
    let p = Parley::start(ENV);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let call = token(&p, &key, json!({"contact": "visitor-1"}));
    let a = whip(
        &p,
        "/v1/webrtc/whip",
        Some(&call),
        "application/sdp",
        VIDEO_OFFER.as_bytes(),
        &[],
    );
    assert_eq!(
        (a.status, a.code()),
        (406, "not_acceptable".into()),
        "{a:?}"
    );
}

#[test]
fn sessions_end_by_delete_and_take_no_trickle_ice() {
    let p = Parley::start(ENV);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let (_, reader) = p.tenant(&root, "Reader", None, "read");
    let call = token(&p, &key, json!({"contact": "visitor-1"}));
    let session = "/v1/webrtc/whip/cdr_unknown";
    let delete = |auth: Option<&str>| {
        let value = auth.map(bearer);
        let headers: Vec<(&str, &str)> = value
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        request(p.http_addr, "DELETE", session, &headers, b"")
    };

    // No such call: 404, whoever asks; without a bearer 401; a read-only key 403.
    for t in [&call, &key] {
        let a = delete(Some(t));
        assert_eq!((a.status, a.code()), (404, "not_found".into()), "{a:?}");
    }
    let a = delete(None);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.header("www-authenticate").is_some(), "{a:?}");
    assert_eq!(delete(Some("pwt_unknown")).status, 401);
    assert_eq!(delete(Some(&reader)).status, 403);

    // Trickle ICE (PATCH) is refused with the methods there are, and why.
    let auth = bearer(&call);
    let a = request(
        p.http_addr,
        "PATCH",
        session,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/trickle-ice-sdpfrag"),
        ],
        b"a=ice-ufrag:Xk3v\r\na=candidate:2 1 udp 1 127.0.0.1 9 typ host\r\n",
    );
    assert_eq!(a.status, 405, "{a:?}");
    let allow = a.header("allow").unwrap_or_default().to_string();
    assert!(
        allow.contains("DELETE") && !allow.contains("PATCH"),
        "{a:?}"
    );
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("trickle")),
        "{a:?}"
    );
    // Other methods too.
    let a = request(p.http_addr, "GET", "/v1/webrtc/whip", &[], b"");
    assert_eq!(a.status, 405, "{a:?}");
    assert!(
        a.header("allow").is_some_and(|v| v.contains("POST")),
        "{a:?}"
    );
    let a = request(p.http_addr, "PUT", session, &[], b"");
    assert_eq!(a.status, 405, "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// CORS and ICE servers

#[test]
fn cors_answers_allowed_origins_only_and_links_ice_servers() {
    let mut env = ENV.to_vec();
    env.push((
        "PARLEY_WEBRTC_ALLOWED_ORIGINS",
        r#"["https://shop.example"]"#,
    ));
    env.push((
        "PARLEY_WEBRTC_ICE_SERVERS",
        r#"[{"urls": "stun:stun.example:3478"},
            {"urls": ["turn:turn.example:3478?transport=udp"], "username": "u1", "credential": "s3cret"}]"#,
    ));
    let p = Parley::start(&env);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let call = token(&p, &key, json!({"contact": "visitor-1"}));
    let shop = "https://shop.example";
    let preflight = |path: &str, origin: &str, method: &str| {
        request(
            p.http_addr,
            "OPTIONS",
            path,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", method),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
    };
    let stun = r#"<stun:stun.example:3478>; rel="ice-server""#;
    let turn = r#"<turn:turn.example:3478?transport=udp>; rel="ice-server"; username="u1"; credential="s3cret"; credential-type="password""#;

    // An allowed origin's preflight: 204 with every CORS header, and the STUN server (TURN's
    // credentials go to bearers only).
    let a = preflight("/v1/webrtc/whip", shop, "POST");
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(shop), "{a:?}");
    assert!(
        a.header("vary").is_some_and(|v| v.contains("Origin")),
        "{a:?}"
    );
    let methods = a.header("access-control-allow-methods").unwrap_or_default();
    for m in ["POST", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{a:?}");
    }
    let allowed = a
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{a:?}"
    );
    let exposed = a
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(
        exposed.contains("Location") && exposed.contains("Link"),
        "{a:?}"
    );
    assert!(a.header("access-control-max-age").is_some(), "{a:?}");
    assert_eq!(a.header("access-control-allow-credentials"), None, "{a:?}");
    assert_eq!(a.all("link"), [stun], "{a:?}");
    let a = preflight("/v1/webrtc/whip/cdr_x", shop, "DELETE");
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(shop), "{a:?}");

    // A WHIP client's own OPTIONS with its bearer gets the TURN server too.
    let auth = bearer(&call);
    let a = request(
        p.http_addr,
        "OPTIONS",
        "/v1/webrtc/whip",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.all("link"), [stun, turn], "{a:?}");
    assert!(
        a.header("allow").is_some_and(|v| v.contains("POST")),
        "{a:?}"
    );

    // Another origin: answered, without CORS headers (the browser keeps it from the page).
    let evil = "https://evil.example";
    let a = preflight("/v1/webrtc/whip", evil, "POST");
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");
    assert_eq!(a.header("access-control-allow-methods"), None, "{a:?}");

    // The answers themselves carry them for the allowed origin, errors included, so the page
    // can read why.
    let offer = AUDIO_OFFER.as_bytes();
    let a = whip(
        &p,
        "/v1/webrtc/whip",
        None,
        "application/sdp",
        offer,
        &[("Origin", shop)],
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(shop), "{a:?}");
    assert!(a.header("access-control-expose-headers").is_some(), "{a:?}");
    let a = whip(
        &p,
        "/v1/webrtc/whip",
        None,
        "application/sdp",
        offer,
        &[("Origin", evil)],
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");
    let a = request(
        p.http_addr,
        "DELETE",
        "/v1/webrtc/whip/cdr_x",
        &[("Authorization", &auth), ("Origin", shop)],
        b"",
    );
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(shop), "{a:?}");

    // The server's own pages (the call page) need no listing.
    let own = format!("http://{}", p.http_addr);
    let a = preflight("/v1/webrtc/whip", &own, "POST");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(own.as_str()),
        "{a:?}"
    );

    // The token endpoint is for the business's backend: no CORS there.
    let a = mint(&p, &key, json!({"contact": "v-2"}), &[("Origin", shop)]);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");
}

#[test]
fn any_origin_with_a_star() {
    let mut env = ENV.to_vec();
    env.push(("PARLEY_WEBRTC_ALLOWED_ORIGINS", r#"["*"]"#));
    let p = Parley::start(&env);
    let origin = "https://anyone.example";
    let a = request(
        p.http_addr,
        "OPTIONS",
        "/v1/webrtc/whip",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(a.status, 204, "{a:?}");
    // The origin itself, not `*`: the answer depends on it (Vary: Origin).
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(origin),
        "{a:?}"
    );
    assert_eq!(a.all("link").len(), 0, "no ICE servers configured: {a:?}");
}

// ---------------------------------------------------------------------------------------------
// Switched off

#[test]
fn disabled_browser_calls_answer_404() {
    let mut env = ENV.to_vec();
    env.push(("PARLEY_WEBRTC_ENABLED", "false"));
    let p = Parley::start(&env);
    let root = p.printed_admin_key();
    let (_, key) = p.tenant(&root, "Clinic", None, "write");
    let auth = bearer(&key);
    let offer = AUDIO_OFFER.as_bytes();
    let answers = [
        mint(&p, &key, json!({"contact": "v-1"}), &[]),
        whip(
            &p,
            "/v1/webrtc/whip",
            Some(&key),
            "application/sdp",
            offer,
            &[],
        ),
        whip(&p, "/v1/webrtc/whip", None, "application/sdp", offer, &[]),
        request(
            p.http_addr,
            "DELETE",
            "/v1/webrtc/whip/cdr_x",
            &[("Authorization", &auth)],
            b"",
        ),
        request(p.http_addr, "OPTIONS", "/v1/webrtc/whip", &[], b""),
        request(p.http_addr, "OPTIONS", "/v1/webrtc/whip/cdr_x", &[], b""),
        request(p.http_addr, "PATCH", "/v1/webrtc/whip/cdr_x", &[], b""),
    ];
    for a in answers {
        assert_eq!(
            (a.status, a.code()),
            (404, "webrtc_disabled".into()),
            "{a:?}"
        );
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("webrtc.enabled")),
            "{a:?}"
        );
    }
}
