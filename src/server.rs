//! `parley serve`: starts the SIP runtime, the call manager and the HTTP API on one config.

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
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::llm::Llm;
use crate::providers::stt::Stt;
use crate::providers::tts::espeak::EspeakTts;
use crate::providers::tts::Tts;
use crate::providers::Ttfb;
use crate::sip::endpoint::EndpointConfig;
use crate::sip::runtime;
use crate::sip::transaction::TimerConfig;

/// The SIP core's settings from the `[sip]` section.
pub fn endpoint_config(config: &Config) -> EndpointConfig {
    EndpointConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(config.sip.t1_ms),
            t2: Duration::from_millis(config.sip.t2_ms),
            t4: Duration::from_millis(config.sip.t4_ms),
        },
        user_agent: config.sip.user_agent.clone(),
    }
}

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
        local,
        tools: ai.agent.tools.clone(),
        http: crate::providers::http_client(Duration::from_secs(5)),
        metrics: metrics.clone(),
        vad_pad: Duration::from_millis(u64::from(config.media.vad_pad_ms)),
    })
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
        endpoint_config(&config),
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
    if config.media.vad && vad.is_none() {
        tracing::warn!(
            "VAD off: ONNX Runtime or the Silero model is missing (run scripts/fetch_models.sh \
             or set media.onnxruntime and media.vad_model)"
        );
    }
    let engine = Arc::new(
        MediaEngine::start(config.media.workers, vad.as_ref())
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
    // With redis.url, call limits and live calls are shared with the other nodes.
    let redis = if config.redis.url.is_empty() {
        None
    } else {
        let redis = crate::cluster::Redis::new(&config.redis, metrics.clone())
            .context("cannot use redis.url")?;
        tracing::info!(node = redis.node(), prefix = %config.redis.prefix, "sharing call limits and live calls through Redis");
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
    let ctx = Arc::new(CallContext {
        engine,
        config: config.clone(),
        sip: sip.clone(),
        ports,
        metrics: metrics.clone(),
        greeting,
        limits,
        agent,
        agent_runtimes: Default::default(),
        store: store.clone(),
        cdrs: crate::store::cdr::CdrWriter::start(store.clone()),
        live: live.clone(),
        events: events.clone(),
    });
    tokio::spawn(CallManager::new(ctx).run(events_rx));

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
        metrics,
        sip: sip.stats.clone(),
        engine: engine_stats,
        store,
        calls: live,
        events,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("HTTP server failed")?;
    tracing::info!("shutting down");
    Ok(())
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
