//! `parley serve`: wires the SIP runtime, media engine, store, Redis, event bus and webhooks,
//! text channels, CDR writer, call manager, lease sweeper and HTTP API on one config, and
//! drains on shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use parley_media::engine::{MediaEngine, VadModelPaths};

use crate::agent::conversation::Settings;
use crate::agent::menu::Menu;
use crate::agent::session::AgentRuntime;
use crate::api::{self, ApiState};
use crate::call::manager::CallAgent;
use crate::call::manager::{CallContext, CallManager};
use crate::call::ports::PortPool;
use crate::config::agent::AgentMode;
use crate::config::agent::TtsConfig;
use crate::config::trunks::TrunkConfig;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::llm::Llm;
use crate::providers::stt::Stt;
use crate::providers::tts::espeak::EspeakTts;
use crate::providers::tts::Tts;
use crate::providers::Ttfb;
use crate::sip::runtime;

/// Who answers calls, as `agent.mode` (resolved at load) says.
async fn call_agent(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Option<CallAgent>> {
    let local = EspeakTts::new(&TtsConfig::default(), Ttfb::none());
    match config.ai.agent.mode {
        AgentMode::Off => {
            tracing::info!("agent.mode = off: calls are answered without an agent");
            Ok(None)
        }
        AgentMode::Ai | AgentMode::Auto => {
            let rt = agent_runtime(config, metrics, local)
                .context("agent.mode = ai needs an LLM (llm.base_url or llm.api_key)")?;
            tracing::info!(
                llm = rt.llm.name(),
                stt = rt.stt.as_ref().map(|s| s.name()).unwrap_or("none"),
                tts = rt.tts.name(),
                "the AI agent answers calls"
            );
            Ok(Some(CallAgent::Ai(Arc::new(rt))))
        }
        AgentMode::Menu => {
            let menu = Menu::new(&local, config.data_dir.join("voicemail"))
                .await
                .context(
                    "cannot make the built-in menu's prompts with espeak-ng (install it: \
                     scripts/setup.sh), or set agent.mode = \"off\"",
                )?;
            tracing::info!("no AI provider configured: the built-in menu answers calls");
            Ok(Some(CallAgent::Menu(Arc::new(menu))))
        }
    }
}

/// The AI agent's providers and behaviour, when the configuration names an LLM.
fn agent_runtime(
    config: &Config,
    metrics: &Arc<Metrics>,
    local: EspeakTts,
) -> Option<AgentRuntime> {
    let ai = &config.ai;
    let llm = Llm::from_config(&ai.llm, Ttfb::new(metrics.llm_ttfb.clone()))?;
    Some(AgentRuntime {
        settings: Settings::from_config(&ai.agent),
        llm,
        stt: Stt::from_config(&ai.stt, Ttfb::new(metrics.stt_ttfb.clone())),
        tts: Tts::from_config(&ai.tts, Ttfb::new(metrics.tts_ttfb.clone())),
        tts_config: ai.tts.clone(),
        llm_config: ai.llm.clone(),
        local,
        tools: ai.agent.tools.clone(),
        http: crate::providers::http_client(Duration::from_secs(5)),
        metrics: metrics.clone(),
        vad_pad: Duration::from_millis(u64::from(config.media.vad_pad_ms)),
    })
}

/// Each configured trunk with the addresses of its proxy, for recognising its calls. A
/// trunk whose name does not resolve now is logged and recognised by nothing.
async fn trunk_addresses(config: &Config) -> Vec<(TrunkConfig, Vec<std::net::IpAddr>)> {
    let mut out = Vec::new();
    for trunk in &config.sip.trunks {
        let addrs = match tokio::net::lookup_host(trunk.host_port()).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(e) => {
                tracing::warn!(trunk = %trunk.name, error = %e, "cannot resolve the trunk's address; its calls will not be recognised");
                Vec::new()
            }
        };
        out.push((trunk.clone(), addrs));
    }
    out
}

/// `billing.final_unit_notice` spoken by the local voice, at the engine rate; `None` when it
/// is empty or espeak-ng cannot speak it (calls out of credit then end without a word).
async fn final_notice(config: &Config) -> Option<Arc<Vec<i16>>> {
    let text = config.billing.final_unit_notice.trim();
    if text.is_empty() {
        return None;
    }
    let local = EspeakTts::new(&TtsConfig::default(), Ttfb::none());
    match local.synthesize(text, "en").await {
        Ok(pcm) => Some(Arc::new(pcm)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot speak billing.final_unit_notice; calls out of credit end without it");
            None
        }
    }
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(config.recordings_dir()).with_context(|| {
        format!(
            "cannot create the recordings directory {}",
            config.recordings_dir().display()
        )
    })?;
    let greeting = match &config.media.greeting {
        Some(path) => {
            let audio = parley_media::read_wav(path)
                .with_context(|| format!("cannot load the greeting {}", path.display()))?;
            let samples = parley_media::resample_linear(
                &audio.samples,
                audio.sample_rate,
                parley_media::playout::ENGINE_RATE,
            );
            tracing::info!(path = %path.display(), seconds = samples.len() as f64 / parley_media::playout::ENGINE_RATE as f64, "greeting loaded");
            Some(Arc::new(samples))
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let sip = runtime::start(
        config.sip.listen,
        config.endpoint_config(),
        config.sip.external_ip,
        events_tx,
    )
    .await
    .with_context(|| format!("cannot listen for SIP on {}", config.sip.listen))?;
    let ports = PortPool::new(
        config.media.rtp_ports,
        config.sip.listen.ip(),
        metrics.clone(),
    );
    let vad = config
        .media
        .vad_paths()
        .map(|(onnxruntime, model)| VadModelPaths { onnxruntime, model });
    if vad.is_none() {
        let missing = config.media.vad_assets_missing();
        if !missing.is_empty() {
            let missing: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(
                missing = %missing.join(", "),
                "VAD off: {}",
                crate::config::VAD_MISSING_ADVICE
            );
        }
    }
    let engine = Arc::new(
        MediaEngine::start_with(
            config.media.workers,
            vad.as_ref(),
            crate::priority::worker_priority(config.media.worker_nice),
        )
        .context("cannot start the media workers")?,
    );
    tracing::info!(
        workers = engine.worker_count(),
        vad = engine.vad_enabled(),
        "media engine started"
    );
    let store = crate::store::Store::open(&config.database.url, &config.data_dir)
        .await
        .context("cannot open the database (database.url)")?;
    if let Some(key) = store
        .bootstrap(config.api.admin_key.as_deref())
        .await
        .context("cannot prepare the operator's account")?
    {
        // Shown once: only its hash is stored.
        println!("parley: the operator's admin API key (shown once, keep it): {key}");
        tracing::warn!("made the operator's first admin API key; it was printed to stdout once");
    }
    let engine_stats = engine.stats.clone();
    // With redis.url, call limits, live calls and SMS rates are shared with the other nodes.
    let redis = if config.redis.url.is_empty() {
        None
    } else {
        let redis = crate::cluster::Redis::new(&config.redis, metrics.clone())
            .context("cannot use redis.url")?;
        tracing::info!(node = redis.node(), prefix = %config.redis.prefix, "sharing call limits, live calls and SMS rates through Redis");
        Some(redis)
    };
    let (live, limits) = match &redis {
        Some(redis) => (
            crate::call::registry::LiveCalls::shared(redis.clone()),
            crate::call::limits::CallLimits::shared(store.clone(), redis.clone()),
        ),
        None => (
            crate::call::registry::LiveCalls::default(),
            crate::call::limits::CallLimits::local(store.clone()),
        ),
    };
    let (events, durable_events) = crate::events::EventBus::with_durable_feed();
    crate::webhooks::start(store.clone(), durable_events, metrics.clone());
    let agent = call_agent(&config, &metrics).await?;
    let agent_runtimes = Arc::new(crate::agent::profile::AgentRuntimes::default());
    let channels = text_channels(&config, &store, &events, &agent, &agent_runtimes, &redis);
    channels.start();
    let drain = crate::drain::Drain::default();
    let cdrs = crate::store::cdr::CdrWriter::start(store.clone());
    let webrtc = open_webrtc(&config, &engine);
    let ctx = Arc::new(CallContext {
        engine,
        config: config.clone(),
        sip: sip.clone(),
        ports,
        metrics: metrics.clone(),
        greeting,
        limits,
        agent,
        agent_runtimes,
        channels: channels.clone(),
        store: store.clone(),
        cdrs: cdrs.clone(),
        live: live.clone(),
        events: events.clone(),
        final_notice: final_notice(&config).await,
        trunks: trunk_addresses(&config).await,
        drain: drain.clone(),
        webrtc,
    });
    let (originator, dials) = crate::call::originate::Originator::new(
        config.clone(),
        store.clone(),
        metrics.clone(),
        ctx.limits.clone(),
    );
    let browser_calls = crate::call::webrtc::BrowserCalls::new(ctx.clone());
    tokio::spawn(CallManager::new(ctx).run(events_rx, dials));

    tokio::spawn(sweep_leases(store.clone(), metrics.clone()));
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
    tracing::info!(
        sip = %sip.local_addr,
        http = %config.http.listen,
        rtp_ports = %config.media.rtp_ports,
        "parley ready"
    );
    let app = api::router(ApiState {
        metrics: metrics.clone(),
        sip: sip.stats.clone(),
        engine: engine_stats,
        store,
        calls: live.clone(),
        events,
        originator,
        drain: drain.clone(),
        channels,
        browser_calls,
    });
    // The API keeps serving while calls drain (a hang-up through it still works); once they
    // have, open connections (event streams) get a moment to finish, not forever.
    let drain_limit = Duration::from_secs(config.call.drain_s);
    let drained = Arc::new(tokio::sync::Notify::new());
    let done = drained.clone();
    let retry_after_s = config.sip.retry_after_s;
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        crate::drain::signalled().await;
        // OPTIONS probes get 503 from now on: a dispatcher takes the node out of rotation.
        sip.send(runtime::Command::Drain { retry_after_s });
        crate::drain::drain(&drain, &metrics, || live.hang_up_all(), &cdrs, drain_limit).await;
        done.notify_one();
    });
    tokio::select! {
        served = server => served.context("HTTP server failed")?,
        _ = async {
            drained.notified().await;
            tokio::time::sleep(crate::drain::CONNECTIONS_GRACE).await;
        } => tracing::info!("closing the HTTP connections still open"),
    }
    tracing::info!("shutting down");
    Ok(())
}

/// SMS, web chat and contacts' memory, answered by the calls' AI agent (none in menu mode).
fn text_channels(
    config: &Config,
    store: &crate::store::Store,
    events: &crate::events::EventBus,
    agent: &Option<CallAgent>,
    runtimes: &Arc<crate::agent::profile::AgentRuntimes>,
    redis: &Option<Arc<crate::cluster::Redis>>,
) -> crate::channels::Channels {
    let base = match agent {
        Some(CallAgent::Ai(rt)) => Some(rt.clone()),
        _ => None,
    };
    let http = base.as_ref().map(|rt| rt.http.clone()).unwrap_or_default();
    crate::channels::Channels {
        store: store.clone(),
        sms: crate::channels::sms::outbox::Sms::new(
            store.clone(),
            &config.sms,
            http,
            events.clone(),
            redis.clone(),
        ),
        memory: crate::memory::Memory::new(store.clone(), config.memory.clone()),
        agents: Arc::new(crate::channels::agents::TextAgents::new(
            store.clone(),
            base,
            runtimes.clone(),
        )),
        events: events.clone(),
    }
}

/// How often leases past their validity are looked for.
const LEASE_SWEEP: Duration = Duration::from_secs(5);

/// Settles the leases nobody renewed in time (a node died mid-call): at their last reported
/// usage plus one increment. Every node sweeps; the lock on the account's balance row makes
/// a lease settle once.
async fn sweep_leases(store: crate::store::Store, metrics: Arc<Metrics>) {
    let mut every = tokio::time::interval(LEASE_SWEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.expire_due(crate::store::now_ms()).await {
            Ok(n) => {
                metrics
                    .leases_expired
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
        }
    }
}

/// The media workers' WebRTC port (`webrtc.udp_port`) and what answers browsers' offers for
/// it; None when browser calls are off, or the port cannot be opened (then the WHIP endpoint
/// answers 503 and says why in the log).
fn open_webrtc(
    config: &Config,
    engine: &MediaEngine,
) -> Option<Arc<parley_media::webrtc::WebRtcAnswerer>> {
    if !config.webrtc.enabled {
        return None;
    }
    let (address, bind_ip) = webrtc_address(config);
    let bind = std::net::SocketAddr::new(bind_ip, config.webrtc.udp_port);
    let opened = std::net::UdpSocket::bind(bind).and_then(|socket| {
        let port = socket.local_addr()?.port();
        engine
            .attach_webrtc(socket)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(port)
    });
    let port = match opened {
        Ok(port) => port,
        Err(e) => {
            tracing::error!(port = config.webrtc.udp_port, error = %e, "cannot open the WebRTC port (webrtc.udp_port): browser calls are refused");
            return None;
        }
    };
    let candidate = std::net::SocketAddr::new(address, port);
    match parley_media::webrtc::WebRtcAnswerer::new(candidate) {
        Ok(answerer) => {
            tracing::info!(%candidate, "browser calls (WebRTC) on one UDP port");
            Some(Arc::new(answerer))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare WebRTC: browser calls are refused");
            None
        }
    }
}

/// The address browsers are told to send media to: `webrtc.public_ip`, else
/// `sip.external_ip`, else the HTTP listener's own address when it is a specific one other
/// than loopback, else the address of the interface that routes outwards (browsers do not
/// pair their candidates with a loopback one unless told to, so even a browser on this
/// machine is better served there), else loopback. With it, the address the port is bound
/// to: every interface for a configured (perhaps NAT-ed) address; otherwise that address
/// itself, so that answers leave from the address the browser sent to (ICE checks that).
fn webrtc_address(config: &Config) -> (std::net::IpAddr, std::net::IpAddr) {
    if let Some(ip) = config.webrtc.public_ip.or(config.sip.external_ip) {
        return (ip, std::net::IpAddr::from([0, 0, 0, 0]));
    }
    let http = config.http.listen.ip();
    let local = if !http.is_unspecified() && !http.is_loopback() {
        http
    } else {
        outward_address()
    };
    (local, local)
}

/// The address of the interface that routes outwards; loopback on a machine without one.
fn outward_address() -> std::net::IpAddr {
    // No packet is sent: connecting a UDP socket only asks the kernel for its route.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}
