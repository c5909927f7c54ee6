//! `parley doctor`: every dependency this configuration needs, checked now, one verdict a line.
//!
//! A deployment that starts but cannot do its job (a VAD model that was never fetched, a
//! PostgreSQL it cannot reach, a port another process holds) is worse than one that refuses
//! to start, because it fails on the first call instead of on the deploy. The doctor finds
//! those before the first call: it loads the VAD model, runs espeak-ng, binds the ports, opens
//! the database and Redis, and resolves each provider's host. It changes nothing: no database
//! file is created, no migration runs.
//!
//! A finding is `ok`, `warn` (works, but something is off or degraded) or `MISSING` (a thing
//! this configuration needs is absent); the command exits 1 when anything is missing.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::agent::{AgentMode, LlmKind, SttKind, TtsKind};
use crate::config::{Config, PortRange};

/// How long a network check (database, Redis, DNS) may take before it counts as unreachable.
const NETWORK_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but degraded or worth a look; does not fail the command.
    Warn,
    /// Required by this configuration and absent or broken.
    Missing,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Missing => "MISSING",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub verdict: Verdict,
    /// The dependency, as the operator knows it (`vad`, `database`, `stt host`, ...).
    pub what: String,
    pub detail: String,
}

impl Finding {
    fn new(verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            verdict,
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Runs every check this configuration calls for.
pub async fn examine(config: &Config) -> Vec<Finding> {
    let mut out = vec![vad(config), espeak(config).await];
    out.push(udp_and_tcp_free("sip.listen", config.sip.listen));
    out.push(tcp_free("http.listen", config.http.listen));
    out.push(rtp_ports(config.media.rtp_ports, config.sip.listen));
    out.push(data_dir(&config.data_dir));
    out.push(database(config).await);
    if !config.redis.url.is_empty() {
        out.push(redis(&config.redis.url).await);
    }
    for (what, url) in remote_endpoints(config) {
        out.push(resolves(what, &url).await);
    }
    out
}

/// True when nothing required is missing.
pub fn healthy(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.verdict != Verdict::Missing)
}

/// The report as printed: one aligned line per finding, then the verdict.
pub fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<7}  {:<width$}  {}\n",
            f.verdict.to_string(),
            f.what,
            f.detail
        ));
    }
    let missing = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Missing)
        .count();
    let warned = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Warn)
        .count();
    out.push_str(&match (missing, warned) {
        (0, 0) => "verdict: ready\n".to_string(),
        (0, w) => format!("verdict: ready, with {w} warning(s)\n"),
        (m, _) => format!("verdict: NOT READY: {m} required dependency(ies) missing\n"),
    });
    out
}

/// The VAD: both files present, and ONNX Runtime really loads the model (a truncated library
/// or a model of the wrong version fails here, not on the first call).
fn vad(config: &Config) -> Finding {
    if !config.media.vad {
        return Finding::new(Verdict::Ok, "vad", "off (media.vad = false)");
    }
    let missing = config.media.vad_assets_missing();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        return Finding::new(
            Verdict::Missing,
            "vad",
            format!(
                "{} not found; {}",
                names.join(" and "),
                crate::config::VAD_MISSING_ADVICE
            ),
        );
    }
    let Some((lib, model)) = config.media.vad_paths() else {
        return Finding::new(
            Verdict::Missing,
            "vad",
            "the VAD files vanished while checked",
        );
    };
    match parley_media::vad::SileroModel::load(&lib, &model) {
        Ok(_) => Finding::new(
            Verdict::Ok,
            "vad",
            format!(
                "Silero model {} loads with ONNX Runtime {}",
                model.display(),
                lib.display()
            ),
        ),
        Err(e) => Finding::new(
            Verdict::Missing,
            "vad",
            format!(
                "{} or {} does not load ({e}); fetch them again: make models",
                lib.display(),
                model.display()
            ),
        ),
    }
}

/// espeak-ng: the built-in menu's voice, the espeak TTS, and the fallback voice when a
/// provider fails. Required where it is the only voice; a warning elsewhere.
async fn espeak(config: &Config) -> Finding {
    let needed =
        config.ai.agent.mode == AgentMode::Menu || config.ai.tts.provider == TtsKind::Espeak;
    let version = tokio::time::timeout(
        NETWORK_DEADLINE,
        tokio::process::Command::new("espeak-ng")
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match version {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            Finding::new(
                Verdict::Ok,
                "espeak-ng",
                text.lines().next().unwrap_or("").trim(),
            )
        }
        other => {
            let why = match other {
                Ok(Ok(out)) => format!("`espeak-ng --version` exited with {}", out.status),
                Ok(Err(e)) => format!("cannot run espeak-ng ({e})"),
                Err(_) => "`espeak-ng --version` did not finish".to_string(),
            };
            let (verdict, role) = if needed {
                (Verdict::Missing, "it is this configuration's voice")
            } else {
                (
                    Verdict::Warn,
                    "it is the fallback voice when the TTS provider fails and the voice of the \
                     final-units notice",
                )
            };
            Finding::new(
                verdict,
                "espeak-ng",
                format!("{why}; {role}: apt-get install espeak-ng"),
            )
        }
    }
}

fn udp_and_tcp_free(what: &str, addr: SocketAddr) -> Finding {
    let udp = UdpSocket::bind(addr).err();
    let tcp = TcpListener::bind(addr).err();
    match (udp, tcp) {
        (None, None) => Finding::new(Verdict::Ok, what, format!("{addr} free (UDP and TCP)")),
        (udp, tcp) => {
            let mut why = Vec::new();
            if let Some(e) = udp {
                why.push(format!("UDP: {e}"));
            }
            if let Some(e) = tcp {
                why.push(format!("TCP: {e}"));
            }
            Finding::new(
                Verdict::Missing,
                what,
                format!("cannot bind {addr} ({})", why.join("; ")),
            )
        }
    }
}

fn tcp_free(what: &str, addr: SocketAddr) -> Finding {
    match TcpListener::bind(addr) {
        Ok(_) => Finding::new(Verdict::Ok, what, format!("{addr} free (TCP)")),
        Err(e) => Finding::new(Verdict::Missing, what, format!("cannot bind {addr}: {e}")),
    }
}

/// Each call takes an even/odd pair of the range; the range is only useful where its pairs
/// can be bound. Binding every port of a range of 10,000 takes a few milliseconds.
fn rtp_ports(range: PortRange, sip_listen: SocketAddr) -> Finding {
    let ip = sip_listen.ip();
    let first_even = range.start + range.start % 2;
    let (mut free, mut taken) = (0u32, 0u32);
    let mut port = first_even;
    while port < range.end {
        // RTP on the even port, RTCP on the odd one above it: a call needs both.
        let rtp = UdpSocket::bind(SocketAddr::new(ip, port));
        let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1));
        if rtp.is_ok() && rtcp.is_ok() {
            free += 1;
        } else {
            taken += 1;
        }
        port = match port.checked_add(2) {
            Some(p) => p,
            None => break,
        };
    }
    let what = "media.rtp_ports";
    match (free, taken) {
        (0, _) => Finding::new(
            Verdict::Missing,
            what,
            format!("{range}: no RTP/RTCP port pair of the range can be bound"),
        ),
        (f, 0) => Finding::new(
            Verdict::Ok,
            what,
            format!("{range}: {f} RTP/RTCP port pairs free ({f} calls)"),
        ),
        (f, t) => Finding::new(
            Verdict::Warn,
            what,
            format!("{range}: {f} RTP/RTCP port pairs free, {t} held by other processes"),
        ),
    }
}

/// The data directory holds the SQLite database, recordings and voicemail: it must exist and
/// be writable, or be creatable.
fn data_dir(dir: &Path) -> Finding {
    let what = "data_dir";
    if dir.is_dir() {
        return match writable(dir) {
            Ok(()) => Finding::new(Verdict::Ok, what, format!("{} writable", dir.display())),
            Err(e) => Finding::new(
                Verdict::Missing,
                what,
                format!("{} is not writable: {e}", dir.display()),
            ),
        };
    }
    match nearest_existing(dir) {
        Some(parent) if writable(&parent).is_ok() => Finding::new(
            Verdict::Ok,
            what,
            format!(
                "{} will be created (in {})",
                dir.display(),
                parent.display()
            ),
        ),
        Some(parent) => Finding::new(
            Verdict::Missing,
            what,
            format!(
                "{} does not exist and {} is not writable",
                dir.display(),
                parent.display()
            ),
        ),
        None => Finding::new(
            Verdict::Missing,
            what,
            format!("{} cannot be created", dir.display()),
        ),
    }
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    absolute
        .ancestors()
        .find(|a| a.is_dir())
        .map(Path::to_path_buf)
}

/// Writes and removes a probe file: permission bits do not tell about read-only mounts.
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".parley-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The database: PostgreSQL answers `SELECT 1`; an SQLite file that exists opens read-only
/// (one that does not yet is created by `serve`, which the data directory check covers).
async fn database(config: &Config) -> Finding {
    let what = "database";
    let url = &config.database.url;
    let url = if url.is_empty() {
        let path = config.data_dir.join("parley.db");
        if !path.exists() {
            return Finding::new(
                Verdict::Ok,
                what,
                format!("SQLite {} (made on first start)", path.display()),
            );
        }
        format!("sqlite://{}?mode=ro", path.display())
    } else {
        url.clone()
    };
    let shown = redact(&url);
    sqlx::any::install_default_drivers();
    let probe = async {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(NETWORK_DEADLINE, probe).await {
        Ok(Ok(())) => Finding::new(Verdict::Ok, what, format!("{shown} answers")),
        Ok(Err(e)) => Finding::new(Verdict::Missing, what, format!("{shown}: {e}")),
        Err(_) => Finding::new(
            Verdict::Missing,
            what,
            format!("{shown}: no answer within {}s", NETWORK_DEADLINE.as_secs()),
        ),
    }
}

async fn redis(url: &str) -> Finding {
    let what = "redis";
    let shown = redact(url);
    let probe = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(NETWORK_DEADLINE, probe).await {
        Ok(Ok(_)) => Finding::new(Verdict::Ok, what, format!("{shown} answers PING")),
        Ok(Err(e)) => Finding::new(Verdict::Missing, what, format!("{shown}: {e}")),
        Err(_) => Finding::new(
            Verdict::Missing,
            what,
            format!("{shown}: no answer within {}s", NETWORK_DEADLINE.as_secs()),
        ),
    }
}

/// A URL with its password replaced, for printing.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Every remote endpoint the configuration calls: the providers (their vendor's address when
/// no base_url is set), Twilio, HTTP tools and the carriers' trunks.
fn remote_endpoints(config: &Config) -> Vec<(String, String)> {
    use crate::providers::{llm, stt, tts};
    let ai = &config.ai;
    let mut out = Vec::new();
    // Each configured provider's vendor address, used when its base_url is not set.
    let stt = match ai.stt.provider {
        SttKind::Deepgram => Some(stt::deepgram::DEFAULT_BASE),
        SttKind::OpenAi => Some(stt::openai::DEFAULT_BASE),
        SttKind::Auto | SttKind::None => None,
    };
    let llm = (ai.llm.provider == LlmKind::OpenAi).then_some(llm::openai::DEFAULT_BASE);
    let tts = match ai.tts.provider {
        TtsKind::Deepgram => Some(tts::deepgram::VENDOR_URL),
        TtsKind::ElevenLabs => Some(tts::elevenlabs::VENDOR_URL),
        TtsKind::OpenAi => Some(tts::openai::VENDOR_URL),
        TtsKind::Auto | TtsKind::Espeak => None,
    };
    for (what, base_url, vendor) in [
        ("stt", &ai.stt.base_url, stt),
        ("llm", &ai.llm.base_url, llm),
        ("tts", &ai.tts.base_url, tts),
    ] {
        if let Some(vendor) = vendor {
            let url = base_url.clone().unwrap_or_else(|| vendor.to_string());
            out.push((what.to_string(), url));
        }
    }
    for tool in &ai.agent.tools {
        out.push((format!("tool {}", tool.name), tool.url.clone()));
    }
    if config.sms.enabled() {
        out.push(("sms (twilio)".into(), config.sms.twilio_api_url.clone()));
    }
    for trunk in &config.sip.trunks {
        out.push((
            format!("trunk {}", trunk.name),
            format!("sip://{}", trunk.host_port()),
        ));
    }
    out
}

/// The host of `url` resolves (DNS, /etc/hosts or a literal address). Reaching the vendor is
/// not tried: that would spend the user's quota and need their keys to mean anything.
async fn resolves(what: String, url: &str) -> Finding {
    // Tool URLs and base URLs may carry keys (in the user part or the query): never printed.
    let url = &redact(url.split(['?', '#']).next().unwrap_or(url));
    let Some(host_port) = host_port(url) else {
        return Finding::new(Verdict::Missing, what, format!("{url}: no host in the URL"));
    };
    match tokio::time::timeout(NETWORK_DEADLINE, tokio::net::lookup_host(host_port.clone())).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(addr) => Finding::new(
                Verdict::Ok,
                what,
                format!("{url}: {} resolves to {}", host_port, addr.ip()),
            ),
            None => Finding::new(
                Verdict::Missing,
                what,
                format!("{url}: {host_port} has no address"),
            ),
        },
        Ok(Err(e)) => Finding::new(
            Verdict::Missing,
            what,
            format!("{url}: {host_port} does not resolve ({e})"),
        ),
        Err(_) => Finding::new(
            Verdict::Missing,
            what,
            format!(
                "{url}: {host_port} did not resolve within {}s",
                NETWORK_DEADLINE.as_secs()
            ),
        ),
    }
}

/// `host:port` of a URL, the port defaulting by scheme.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() {
        return None;
    }
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    if has_port {
        return Some(authority.to_string());
    }
    let port = match scheme {
        "https" | "wss" => 443,
        "http" | "ws" => 80,
        "sip" => 5060,
        _ => return None,
    };
    Some(format!("{authority}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_url_or_its_scheme() {
        assert_eq!(
            host_port("https://api.openai.com/v1").unwrap(),
            "api.openai.com:443"
        );
        assert_eq!(
            host_port("wss://api.deepgram.com").unwrap(),
            "api.deepgram.com:443"
        );
        assert_eq!(
            host_port("http://127.0.0.1:8000/v1").unwrap(),
            "127.0.0.1:8000"
        );
        assert_eq!(host_port("http://u:p@[::1]:9/x?y").unwrap(), "[::1]:9");
        assert_eq!(
            host_port("sip://carrier.example.com:5080").unwrap(),
            "carrier.example.com:5080"
        );
        assert!(host_port("no scheme").is_none());
        assert!(host_port("ftp://host/x").is_none());
    }

    #[test]
    fn providers_are_checked_at_their_base_url_or_their_vendors() {
        let mut config = Config::default();
        config.ai.stt.provider = SttKind::Deepgram;
        config.ai.llm.provider = LlmKind::OpenAi;
        config.ai.llm.base_url = Some("http://127.0.0.1:11434/v1".into());
        config.ai.tts.provider = TtsKind::Espeak;
        let endpoints = remote_endpoints(&config);
        assert_eq!(
            endpoints,
            [
                ("stt".to_string(), "wss://api.deepgram.com".to_string()),
                ("llm".to_string(), "http://127.0.0.1:11434/v1".to_string()),
            ]
        );
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://parley:s3cret@db:5432/parley"),
            "postgres://parley:***@db:5432/parley"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let f = rt.block_on(resolves(
            "tool".into(),
            "https://bot:hunter2@localhost:9/book?api_key=hunter2",
        ));
        assert!(!f.detail.contains("hunter2"), "{f:?}");
        assert!(f.detail.contains("localhost:9"), "{f:?}");
    }

    #[test]
    fn the_verdict_fails_only_on_missing() {
        let ok = Finding::new(Verdict::Ok, "a", "fine");
        let warn = Finding::new(Verdict::Warn, "b", "meh");
        let missing = Finding::new(Verdict::Missing, "c", "gone");
        assert!(healthy(&[ok.clone(), warn.clone()]));
        assert!(!healthy(&[ok.clone(), missing.clone()]));
        let report = render(&[ok, warn, missing]);
        assert!(report.contains("MISSING  c  gone"), "{report}");
        assert!(report.ends_with("verdict: NOT READY: 1 required dependency(ies) missing\n"));
    }

    #[test]
    fn a_port_in_use_is_reported() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let f = tcp_free("http.listen", held.local_addr().unwrap());
        assert_eq!(f.verdict, Verdict::Missing, "{f:?}");
        let range: PortRange = {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = sock.local_addr().unwrap().port();
            drop(sock);
            let even = p - p % 2;
            format!("{even}-{}", even + 1).parse().unwrap()
        };
        let _hold = UdpSocket::bind(SocketAddr::new("127.0.0.1".parse().unwrap(), range.start));
        let f = rtp_ports(range, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(f.verdict, Verdict::Missing, "{f:?}");
    }
}
