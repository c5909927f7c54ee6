//! The call manager: admission (capacity, RTP ports, SDP), one session task per call, and the
//! routing of SIP events to the session they belong to.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::agent::menu::{self, Menu};
use crate::agent::profile::{AgentProfile, AgentRuntimes};
use crate::agent::session::{
    self as agent_session, sleep_until, AgentIo, AgentRuntime, FromAgent, ToAgent,
};
use crate::call::core::{Action, CallCore, CallEvent, CoreConfig, HangupCause, Input};
use crate::call::lease::CallLease;
use crate::call::media::{self, CallMedia, MediaStart};
use crate::call::ports::{PortPool, RtpPorts};
use crate::call::record::CallRecord;
use crate::call::registry::{LiveCall, LiveCalls, LiveEntry};
use crate::call::signalling::{Ending, Signal, Signalling, SipSignalling};
use crate::config::{recording_name, Config, FinalUnitAction};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::sip::endpoint::{CallRef, Event};
use crate::sip::message::Request;
use crate::sip::runtime::{Command, SipHandle};
use crate::sip::sdp::{self, Direction, LocalCaps, Negotiated, Origin, SessionDescription};
use crate::store::directory::{dialled, Route};
use crate::store::StoreError;
use parley_media::engine::MediaEngine;
use parley_media::session::MediaEvent;

/// What every call shares.
pub struct CallContext {
    pub config: Arc<Config>,
    pub sip: SipHandle,
    pub ports: Arc<PortPool>,
    pub metrics: Arc<Metrics>,
    pub engine: Arc<MediaEngine>,
    /// The greeting, decoded and resampled to the engine rate once at startup.
    pub greeting: Option<Arc<Vec<i16>>>,
    /// Who answers calls (`agent.mode`); `None`: nobody (mode `off`).
    pub agent: Option<CallAgent>,
    /// The AI agent as each stored agent configures it (shared with the text channels).
    pub agent_runtimes: Arc<AgentRuntimes>,
    /// Contacts' memory and SMS (the agent's `send_sms`).
    pub channels: crate::channels::Channels,
    /// Routing and billing leases.
    pub store: crate::store::Store,
    /// Where call detail records go.
    pub cdrs: crate::store::cdr::CdrWriter,
    /// The accounts' concurrent-call limits.
    pub limits: crate::call::limits::CallLimits,
    /// The calls in progress, for the API.
    pub live: LiveCalls,
    /// Set when the node is shutting down: no new calls.
    pub drain: crate::drain::Drain,
    /// The configured trunks and the addresses their calls come from (resolved at start).
    pub trunks: Vec<(crate::config::trunks::TrunkConfig, Vec<std::net::IpAddr>)>,
    /// `billing.final_unit_notice` in the local voice at the engine rate, made at start.
    pub final_notice: Option<Arc<Vec<i16>>>,
    pub events: EventBus,
    /// Answers browsers' offers for the media workers' WebRTC port; None when browser calls
    /// are off (`webrtc.enabled = false`).
    pub webrtc: Option<Arc<parley_media::webrtc::WebRtcAnswerer>>,
}

/// The agent every call gets.
#[derive(Clone)]
pub enum CallAgent {
    Ai(Arc<AgentRuntime>),
    Menu(Arc<Menu>),
}

/// The call's side of its agent task.
struct AgentLink {
    events: mpsc::UnboundedSender<ToAgent>,
    requests: mpsc::UnboundedReceiver<FromAgent>,
    task: tokio::task::JoinHandle<parley_media::playout::PlayoutProducer>,
}

/// The caller's audio on its way to the agent (16 kHz, 20 ms chunks).
pub(super) type CallerAudio = mpsc::Receiver<Vec<i16>>;

/// Caller audio chunks (20 ms each) queued towards the agent before the capture pump drops.
const AGENT_AUDIO_QUEUE: usize = 256;

async fn next_request(agent: &mut Option<AgentLink>) -> Option<FromAgent> {
    match agent.as_mut() {
        Some(a) => a.requests.recv().await,
        None => std::future::pending().await,
    }
}

pub struct CallManager {
    pub(super) ctx: Arc<CallContext>,
    pub(super) calls: HashMap<CallRef, mpsc::UnboundedSender<Event>>,
    /// SDP session ids: seeded, so a test can replay what the manager does.
    pub(super) rng: rand::rngs::StdRng,
}

/// Keeps `parley_active_calls` right however a session ends.
pub(super) struct ActiveGuard(pub(super) Arc<Metrics>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CallManager {
    pub fn new(ctx: Arc<CallContext>) -> CallManager {
        CallManager::with_seed(ctx, rand::random())
    }

    /// A manager whose random choices (SDP session ids) follow `seed`.
    pub fn with_seed(ctx: Arc<CallContext>, seed: u64) -> CallManager {
        CallManager {
            ctx,
            calls: HashMap::new(),
            rng: rand::SeedableRng::seed_from_u64(seed),
        }
    }

    /// Serves the SIP stack's events and the API's calls to place until both stop.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut dials: mpsc::UnboundedReceiver<crate::call::originate::Dial>,
    ) {
        loop {
            let event = tokio::select! {
                Some(event) = events.recv() => event,
                Some(dial) = dials.recv() => {
                    self.dial(dial).await;
                    continue;
                }
                else => break,
            };
            match event {
                Event::Incoming {
                    call,
                    request,
                    local,
                    peer,
                } => self.admit(call, request, local, peer.addr.ip()),
                Event::Ended { call, reason } => {
                    if let Some(tx) = self.calls.remove(&call) {
                        let _ = tx.send(Event::Ended { call, reason });
                    }
                }
                Event::Confirmed { call, .. }
                | Event::Reinvite { call, .. }
                | Event::Progress { call, .. }
                | Event::ReferAnswered { call, .. }
                | Event::TransferProgress { call, .. }
                | Event::Answered { call, .. } => {
                    if let Some(tx) = self.calls.get(&call) {
                        let _ = tx.send(event);
                    }
                }
            }
        }
    }

    /// Refuses the INVITE before it has a session; its record goes to the operator.
    fn reject(
        &self,
        call: CallRef,
        record: CallRecord,
        (code, cause): (u16, &str),
        extra: Vec<(&'static str, String)>,
    ) {
        self.ctx.sip.send(Command::Respond {
            call,
            code,
            sdp: None,
            extra,
        });
        let cdrs = self.ctx.cdrs.clone();
        let cdr = record.refused_unrouted(code, cause);
        tokio::spawn(async move { cdrs.write(cdr).await });
    }

    fn admit(
        &mut self,
        call: CallRef,
        request: Request,
        local: std::net::SocketAddr,
        from_ip: std::net::IpAddr,
    ) {
        let ctx = &self.ctx;
        let call_id = request
            .core()
            .map(|c| c.call_id)
            .unwrap_or_else(|_| call.to_string());
        let (from, to) = request
            .core()
            .map(|c| (c.from.uri, c.to.uri))
            .unwrap_or_default();
        let mut record =
            CallRecord::inbound(&call_id, &from, &to).on_node(ctx.config.redis.node_name());
        // A call from a trunk's address is the trunk's.
        let trunk = ctx
            .trunks
            .iter()
            .find(|(_, addrs)| addrs.contains(&from_ip))
            .map(|(t, _)| t.clone());
        if let Some(t) = &trunk {
            record.via_trunk(&t.name);
        }
        Metrics::inc(&ctx.metrics.calls_total);
        if ctx.drain.draining() {
            Metrics::inc(&ctx.metrics.calls_rejected_capacity);
            tracing::info!(%call_id, "draining, rejecting with 503");
            let retry = ctx.config.sip.retry_after_s.to_string();
            return self.reject(
                call,
                record,
                (503, "draining"),
                vec![("Retry-After", retry)],
            );
        }
        let active = ctx.metrics.active_calls.load(Ordering::Relaxed);
        if active >= ctx.config.sip.max_calls as i64 {
            Metrics::inc(&ctx.metrics.calls_rejected_capacity);
            tracing::info!(%call_id, active, "at capacity, rejecting with 503");
            let retry = ctx.config.sip.retry_after_s.to_string();
            return self.reject(
                call,
                record,
                (503, "capacity"),
                vec![("Retry-After", retry)],
            );
        }
        let offer = if request.body.is_empty() {
            None
        } else {
            match std::str::from_utf8(&request.body)
                .map_err(|_| "SDP is not UTF-8".to_string())
                .and_then(|s| SessionDescription::parse(s).map_err(|e| e.to_string()))
            {
                Ok(sdp) => Some(sdp),
                Err(e) => {
                    Metrics::inc(&ctx.metrics.calls_rejected_media);
                    return self.reject(
                        call,
                        record,
                        (400, "bad_sdp"),
                        vec![("Warning", format!("399 parley \"bad SDP: {e}\""))],
                    );
                }
            }
        };
        let Some(ports) = ctx.ports.allocate() else {
            Metrics::inc(&ctx.metrics.calls_rejected_media);
            tracing::warn!(%call_id, "no free RTP ports");
            let retry = ctx.config.sip.retry_after_s.to_string();
            return self.reject(
                call,
                record,
                (503, "no_ports"),
                vec![("Retry-After", retry)],
            );
        };
        let origin = Origin::new(local.ip(), &mut self.rng);
        let caps = LocalCaps::default();
        let media = match &offer {
            Some(offer) => match sdp::answer(offer, &caps, local.ip(), ports.port, &origin) {
                Ok((answer, negotiated)) => Offer::Answered { answer, negotiated },
                Err(e) => {
                    Metrics::inc(&ctx.metrics.calls_rejected_media);
                    tracing::info!(%call_id, error = %e, "no acceptable media, 488");
                    return self.reject(
                        call,
                        record,
                        (488, "no_media"),
                        vec![("Warning", format!("304 parley \"{e}\""))],
                    );
                }
            },
            // Late offer (RFC 3261 §13.2.1): we offer in the 200, the answer comes in the ACK.
            None => Offer::Ours(sdp::offer(
                &caps,
                local.ip(),
                ports.port,
                &origin,
                Direction::SendRecv,
            )),
        };
        ctx.metrics.active_calls.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(ctx.metrics.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        self.calls.insert(call, tx);
        let dialled =
            dialled(&request.uri).or_else(|| request.core().ok().and_then(|c| dialled(&c.to.uri)));
        let session = Session {
            ctx: ctx.clone(),
            call,
            call_id: call_id.clone(),
            origin,
            media,
            dialled,
            trunk,
            record,
            _guard: guard,
        };
        let span = tracing::info_span!("call", call_id = %call_id);
        tokio::spawn(session.run(ports, rx).instrument(span));
    }
}

/// Stops the call's agent: its playout ring back, and what it said as it stopped (its last
/// turn, the transcript).
async fn stop_agent(
    mut a: AgentLink,
    turns: &mut Vec<crate::metrics::turns::TurnTimes>,
    transcript: &mut serde_json::Value,
) -> Option<parley_media::playout::PlayoutProducer> {
    drop(a.events);
    let playout = tokio::time::timeout(Duration::from_secs(2), &mut a.task)
        .await
        .ok()
        .and_then(Result::ok);
    while let Ok(request) = a.requests.try_recv() {
        match request {
            FromAgent::Turn(times) => turns.push(times),
            FromAgent::Transcript(lines) => *transcript = lines,
            _ => {}
        }
    }
    playout
}

/// What an answered call holds as it starts to converse.
pub(super) struct InCall {
    pub media: CallMedia,
    pub lease: CallLease,
    pub live: LiveEntry,
    pub hangup_requests: mpsc::UnboundedReceiver<HangupCause>,
    pub who: Option<CallAgent>,
    pub agent_audio: Option<CallerAudio>,
    pub profile: AgentProfile,
    /// The call core of a call we placed, which ran while it rang; None for a call we
    /// answered.
    pub core: Option<CallCore>,
}

/// Who answers a call routed by `route`: the number's stored agent over the config file's.
pub(super) fn agent_for(ctx: &CallContext, route: &Route) -> (AgentProfile, Option<CallAgent>) {
    let profile = route
        .agent
        .as_ref()
        .map(|(settings, _)| AgentProfile::from_stored(settings))
        .unwrap_or_default();
    let who = match (&ctx.agent, &route.agent_id, &route.agent) {
        (Some(CallAgent::Ai(base)), Some(id), Some((_, version))) => Some(CallAgent::Ai(
            ctx.agent_runtimes.get(base, id, *version, &profile),
        )),
        (config_agent, ..) => config_agent.clone(),
    };
    (profile, who)
}

/// How long each digit the agent sends is held.
const DTMF_SEND_MS: u32 = 100;

/// The call core's clock: tokio's, so that a paused test clock moves the core with the
/// driver's timers.
pub(super) fn core_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Answers the agent's transfer tool call `id` with `content`.
fn tell(agent: &Option<AgentLink>, id: String, content: String) {
    if let Some(a) = agent {
        let _ = a.events.send(ToAgent::TransferResult { id, content });
    }
}

fn forward(agent: &Option<AgentLink>, at: std::time::Instant, event: MediaEvent) {
    if let Some(a) = agent {
        let _ = a.events.send(ToAgent::Media { event, at });
    }
}

pub(super) enum Offer {
    /// The caller offered; this is our answer.
    Answered {
        answer: SessionDescription,
        negotiated: Negotiated,
    },
    /// The caller sent no SDP; this is our offer.
    Ours(SessionDescription),
}

pub(super) struct Session {
    pub(super) ctx: Arc<CallContext>,
    pub(super) call: CallRef,
    pub(super) call_id: String,
    pub(super) origin: Origin,
    pub(super) media: Offer,
    /// The number called (Request-URI, else To), as E.164.
    pub(super) dialled: Option<String>,
    /// The trunk the call came in or goes out through.
    pub(super) trunk: Option<crate::config::trunks::TrunkConfig>,
    /// The call's detail record, filled in as it goes.
    pub(super) record: CallRecord,
    pub(super) _guard: ActiveGuard,
}

impl Session {
    async fn run(self, ports: RtpPorts, events: mpsc::UnboundedReceiver<Event>) {
        let ctx = self.ctx.clone();
        if let Some(cdr) = self.answer(ports, events).await {
            ctx.events
                .publish("call.ended", &cdr.account_id, serde_json::json!(cdr));
            ctx.cdrs.write(cdr).await;
        }
    }

    /// The call from routing to hang-up; its detail record when it reached an account.
    async fn answer(
        mut self,
        ports: RtpPorts,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Option<crate::store::cdr::Cdr> {
        let ctx = self.ctx.clone();
        let call = self.call;
        tracing::info!("incoming call");
        if ctx.config.sip.ring_ms > 0 {
            ctx.sip.send(Command::Respond {
                call,
                code: 180,
                sdp: None,
                extra: vec![],
            });
            let ring = tokio::time::sleep(Duration::from_millis(ctx.config.sip.ring_ms));
            tokio::pin!(ring);
            loop {
                tokio::select! {
                    _ = &mut ring => break,
                    ev = events.recv() => match ev {
                        Some(Event::Ended { reason, .. }) => {
                            tracing::info!(?reason, "call ended while ringing");
                            return None;
                        }
                        None => return None,
                        _ => {}
                    },
                }
            }
        }
        // The number called decides the account (and agent); an unknown one gets 404 and
        // nothing is set up for it.
        let trunk_default = self.trunk.as_ref().and_then(|t| {
            let account = t.account_id.as_deref()?;
            Some((account, t.agent_id.as_deref()))
        });
        let route = match ctx
            .store
            .route(
                self.dialled.as_deref(),
                trunk_default,
                ctx.config.sip.catch_all,
            )
            .await
        {
            Ok(Some(route)) => route,
            Ok(None) => {
                tracing::info!(dialled = ?self.dialled, "no such number, rejecting with 404");
                Metrics::inc(&ctx.metrics.calls_rejected_number);
                self.refuse(404, vec![]);
                return Some(self.record.refused_unrouted(404, "unknown_number"));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot route the call, rejecting with 503");
                self.refuse_for_now();
                return None;
            }
        };
        self.record.routed(&route);
        let (profile, who) = agent_for(&ctx, &route);
        tracing::info!(account = %route.account_id, agent = ?route.agent_id, number = ?route.number, "routed");
        // A slot of the account's concurrent calls (on every node with Redis), held until the
        // session ends; 486 when it holds its limit, as a busy line does.
        let _slot = match ctx
            .limits
            .acquire(&route.account_id, &self.record.cdr().id)
            .await
        {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::info!(
                    limit,
                    "the account is at its concurrent call limit, rejecting with 486"
                );
                Metrics::inc(&ctx.metrics.calls_rejected_limit);
                let warning = "399 parley \"the account is at its concurrent call limit\"";
                self.refuse(486, vec![("Warning", warning.to_string())]);
                return Some(self.record.refused(486, "call_limit"));
            }
        };
        let (live, hangup_requests) = self.go_live("ringing");
        // No answer without a grant.
        let heartbeat = Duration::from_secs(ctx.config.billing.heartbeat_s);
        let account = route.account_id.as_str();
        let lease = match CallLease::reserve(
            &ctx.store,
            &ctx.metrics,
            account,
            &self.call_id,
            heartbeat,
        )
        .await
        {
            Ok(lease) => lease,
            Err(StoreError::Insufficient) => {
                tracing::info!(account, "no credit for the call, rejecting with 402");
                Metrics::inc(&ctx.metrics.calls_rejected_credit);
                let warning = "399 parley \"the account has no credit\"".to_string();
                self.refuse(402, vec![("Warning", warning)]);
                return Some(self.record.refused(402, "no_credit"));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reserve the call's billing lease, rejecting with 503");
                self.refuse_for_now();
                return Some(self.record.refused(503, "unavailable"));
            }
        };
        let (sdp_body, params) = match &self.media {
            Offer::Answered { answer, negotiated } => (
                answer.to_string().into_bytes(),
                media::session_params(negotiated),
            ),
            // Until a late offer is answered in the ACK, nothing flows.
            Offer::Ours(offer) => (offer.to_string().into_bytes(), media::inactive_params()),
        };
        let (media, agent_audio) = match self.start_media(ports, params, who.is_some()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot start media, rejecting with 503");
                Metrics::inc(&ctx.metrics.calls_rejected_media);
                lease.release(tokio::time::Instant::now(), false).await;
                self.refuse_for_now();
                return Some(self.record.refused(503, "unavailable"));
            }
        };
        ctx.sip.send(Command::Respond {
            call,
            code: 200,
            sdp: Some(sdp_body),
            extra: vec![],
        });
        let in_call = InCall {
            media,
            lease,
            live,
            hangup_requests,
            who,
            agent_audio,
            profile,
            core: None,
        };
        Some(self.converse(in_call, events).await)
    }

    /// Lists the routed call as live (in `state`) and tells listeners it started.
    pub(super) fn go_live(&self, state: &str) -> (LiveEntry, mpsc::UnboundedReceiver<HangupCause>) {
        go_live(&self.ctx, &self.record, state)
    }

    /// The call's media session on its RTP ports, with the caller's audio towards an agent
    /// when it has one.
    pub(super) fn start_media(
        &self,
        ports: RtpPorts,
        params: parley_media::session::SessionParams,
        with_agent: bool,
    ) -> Result<(CallMedia, Option<CallerAudio>), parley_media::engine::EngineError> {
        start_media(
            &self.ctx,
            &self.call_id,
            media::Transport::Rtp(ports),
            params,
            with_agent,
        )
    }

    /// The answered call's conversation, with its SIP dialog as the signalling.
    pub(super) async fn converse(
        self,
        c: InCall,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> crate::store::cdr::Cdr {
        let codec = match &self.media {
            Offer::Answered { negotiated, .. } => {
                Some(media::session_params(negotiated).codec.name())
            }
            Offer::Ours(_) => None,
        };
        let signalling = SipSignalling {
            sip: self.ctx.sip.clone(),
            call: self.call,
            origin: self.origin,
            media: self.media,
            events,
        };
        let call = Call {
            ctx: self.ctx,
            call_id: self.call_id,
            record: self.record,
            _guard: self._guard,
        };
        call.converse(c, codec, signalling).await
    }

    /// Answers the INVITE with a final refusal.
    fn refuse(&self, code: u16, extra: Vec<(&'static str, String)>) {
        self.ctx.sip.send(Command::Respond {
            call: self.call,
            code,
            sdp: None,
            extra,
        });
    }

    /// 503 with Retry-After: something Parley needs failed; the caller may try again.
    fn refuse_for_now(&self) {
        let retry = self.ctx.config.sip.retry_after_s.to_string();
        self.refuse(503, vec![("Retry-After", retry)]);
    }
}

/// Lists the routed call as live (in `state`) and tells listeners it started.
pub(super) fn go_live(
    ctx: &CallContext,
    record: &CallRecord,
    state: &str,
) -> (LiveEntry, mpsc::UnboundedReceiver<HangupCause>) {
    let cdr = record.cdr();
    let registered = ctx.live.register(LiveCall {
        id: cdr.id.clone(),
        call_id: cdr.call_id.clone(),
        account_id: cdr.account_id.clone(),
        agent_id: cdr.agent_id.clone(),
        number: cdr.number.clone(),
        from_uri: cdr.from_uri.clone(),
        to_uri: cdr.to_uri.clone(),
        direction: cdr.direction.clone(),
        state: state.into(),
        started_at: cdr.started_at,
        answered_at: None,
    });
    if let Some(call) = ctx.live.get(&cdr.id) {
        ctx.events
            .publish("call.started", &cdr.account_id, serde_json::json!(call));
    }
    registered
}

/// The call's media session, with the caller's audio towards an agent when it has one.
pub(super) fn start_media(
    ctx: &CallContext,
    call_id: &str,
    transport: media::Transport,
    params: parley_media::session::SessionParams,
    with_agent: bool,
) -> Result<(CallMedia, Option<CallerAudio>), parley_media::engine::EngineError> {
    let record_to = ctx
        .config
        .media
        .record
        .then(|| ctx.config.recordings_dir().join(recording_name(call_id)));
    let (listener, agent_audio) = if with_agent {
        let (tx, rx) = mpsc::channel(AGENT_AUDIO_QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let media = CallMedia::start(
        &ctx.engine,
        MediaStart {
            transport,
            params,
            record_to,
            options: media::session_options(
                &ctx.config.media,
                ctx.engine.vad_enabled(),
                &format!("parley@{}", ctx.sip.local_addr),
            ),
            dropped_events: ctx.metrics.media_events_dropped.clone(),
            listener,
        },
    )?;
    Ok((media, agent_audio))
}

/// A routed call, whatever its signalling: what its conversation needs.
pub(super) struct Call {
    pub(super) ctx: Arc<CallContext>,
    pub(super) call_id: String,
    /// The call's detail record, filled in as it goes.
    pub(super) record: CallRecord,
    pub(super) _guard: ActiveGuard,
}

impl Call {
    /// The answered call until it ends, with its agent; its detail record.
    pub(super) async fn converse(
        mut self,
        c: InCall,
        codec: Option<&'static str>,
        mut signalling: impl Signalling,
    ) -> crate::store::cdr::Cdr {
        let ctx = self.ctx.clone();
        let InCall {
            mut media,
            mut lease,
            live,
            mut hangup_requests,
            who,
            agent_audio,
            profile,
            core: dialled,
        } = c;
        let record_id = self.record.cdr().id.clone();
        let account_id = self.record.cdr().account_id.clone();
        Metrics::inc(&ctx.metrics.calls_answered);
        let recording = ctx
            .config
            .media
            .record
            .then(|| recording_name(&self.call_id));
        self.record.answered(codec, recording);
        live.answered(crate::store::now_ms());
        let answered = tokio::time::Instant::now();
        lease.answered(answered);
        let mut agent = None;
        match (who, agent_audio) {
            (Some(who), Some(audio)) => {
                if let Some(playout) = media.take_playout() {
                    let (events_tx, events_rx) = mpsc::unbounded_channel();
                    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
                    let io = AgentIo {
                        playout,
                        audio,
                        events: events_rx,
                        requests: requests_tx,
                        call_id: self.call_id.clone(),
                        intro: ctx.greeting.clone(),
                        caller: match &who {
                            CallAgent::Ai(_) => self.caller(&ctx).await,
                            CallAgent::Menu(_) => Default::default(),
                        },
                    };
                    let span = tracing::Span::current();
                    let task = match who {
                        CallAgent::Ai(rt) => {
                            tokio::spawn(agent_session::run(rt, io).instrument(span))
                        }
                        CallAgent::Menu(m) => tokio::spawn(menu::run(m, io).instrument(span)),
                    };
                    agent = Some(AgentLink {
                        events: events_tx,
                        requests: requests_rx,
                        task,
                    });
                }
            }
            _ => {
                if let Some(greeting) = &ctx.greeting {
                    media.play(greeting.clone());
                }
            }
        }
        // Each turn's latency marks, kept for the call's detail record.
        let mut turns: Vec<crate::metrics::turns::TurnTimes> = Vec::new();
        let terminate = ctx.config.billing.final_unit_action == FinalUnitAction::Terminate;
        // Out of credit: the notice goes out so that it ends as the grant does, then BYE.
        let notice = ctx.final_notice.clone().filter(|_| terminate);
        let config = CoreConfig {
            heartbeat: lease.heartbeat(),
            terminate,
            notice: notice.as_ref().map(|n| {
                Duration::from_millis(
                    n.len() as u64 * 1000 / parley_media::playout::ENGINE_RATE as u64,
                )
            }),
            max_duration: profile.max_duration(ctx.config.call.max_duration_s),
        };
        let (granted, final_units) = (lease.granted_s(), lease.final_units());
        let mut core = match dialled {
            Some(mut core) => {
                core.answer(answered.into_std(), config, granted, final_units);
                core
            }
            None => CallCore::answered(answered.into_std(), config, granted, final_units),
        };
        let mut transcript = serde_json::Value::Array(vec![]);
        let reason = loop {
            // Carry out what the call core decided, then wait for what happens next.
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Hangup(cause) => {
                        self.hang_up_for(cause);
                        signalling.hang_up();
                    }
                    Action::Refer { target } => {
                        if !signalling.refer(target) {
                            // 501: this signalling has no transfer; the agent hears it failed.
                            core.handle(core_now(), Input::ReferAnswered { code: 501 });
                        }
                    }
                    Action::TellAgent { id, text } => tell(&agent, id, text),
                    Action::RenewLease => {
                        let now = tokio::time::Instant::now();
                        match lease.renew(now).await {
                            Ok(()) => {
                                if lease.final_units() {
                                    tracing::info!(
                                        "final units granted: the call ends when they run out"
                                    );
                                }
                                core.handle(
                                    now.into_std(),
                                    Input::Granted {
                                        seconds: lease.granted_s(),
                                        final_units: lease.final_units(),
                                    },
                                );
                            }
                            Err(StoreError::Conflict(e)) => {
                                tracing::warn!(error = %e, "cannot renew: the store closed the billing lease");
                                core.handle(now.into_std(), Input::LeaseClosed);
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot renew the billing lease"),
                        }
                    }
                    Action::FinalUnits => ctx.events.publish(
                        "lease.final_units",
                        &account_id,
                        serde_json::json!({
                            "call": record_id,
                            "lease_id": lease.id(),
                            "granted_seconds": lease.granted_s(),
                            "action": if terminate { "terminate" } else { "allow" },
                        }),
                    ),
                    Action::PlayNotice => {
                        tracing::info!(
                            "the call's credit runs out: the agent stops and the notice plays"
                        );
                        if let Some(a) = agent.take() {
                            if let Some(playout) = stop_agent(a, &mut turns, &mut transcript).await
                            {
                                playout.clear();
                                media.give_playout(playout);
                            }
                        }
                        if let Some(n) = &notice {
                            media.play(n.clone());
                        }
                    }
                    Action::Publish(CallEvent::Answered) => {
                        if let Some(call) = ctx.live.get(&record_id) {
                            ctx.events.publish(
                                "call.answered",
                                &account_id,
                                serde_json::json!(call),
                            );
                        }
                    }
                    Action::Publish(CallEvent::TurnCompleted { turn }) => {
                        if let Some(times) = turns.get(turn.wrapping_sub(1)) {
                            ctx.events.publish(
                                "turn.completed",
                                &account_id,
                                serde_json::json!({
                                    "call": record_id,
                                    "turn": turn,
                                    "stages": times.stages_ms(),
                                    "engine_added_us": times.engine_added().map(|d| d.as_micros() as u64),
                                }),
                            );
                        }
                    }
                    Action::InDebt => {
                        // billing.final_unit_action = "allow": it goes on; the lease's
                        // release records what it uses from now on as debt.
                        tracing::info!("the call's credit ran out; it goes on as debt");
                        Metrics::inc(&ctx.metrics.calls_in_debt);
                    }
                }
            }
            let wake = core.next_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                signal = signalling.next() => match signal {
                    Signal::Ended(ending) => break ending,
                    Signal::ReferAnswered { code } => {
                        core.handle(core_now(), Input::ReferAnswered { code });
                    }
                    Signal::TransferProgress { status, terminated } => {
                        core.handle(
                            core_now(),
                            Input::TransferProgress { status, terminated },
                        );
                    }
                    Signal::MediaChanged(params) => media.update(params),
                },
                _ = sleep_until(wake) => core.handle_timeout(core_now()),
                Some((at, ev)) = media.next_stamped_event() => match &ev {
                    MediaEvent::RtpTimeout => {
                        core.handle(core_now(), Input::MediaTimeout)
                    }
                    MediaEvent::TransportClosed(why) => {
                        tracing::info!(reason = why, "the call's transport closed");
                        break Ending::remote(why);
                    }
                    MediaEvent::Dtmf(d) => {
                        tracing::info!(digit = %d.digit, duration_ms = d.duration_ms, "DTMF");
                        forward(&agent, at, ev);
                    }
                    MediaEvent::Speech(s) => {
                        tracing::info!(kind = ?s.kind, t_ms = s.t_ms, detected_ms = s.detected_ms, "speech");
                        forward(&agent, at, ev);
                    }
                    MediaEvent::PlayoutStarted | MediaEvent::SpeechOnset => forward(&agent, at, ev),
                    _ => {}
                },
                Some(request) = next_request(&mut agent) => match request {
                    FromAgent::Hangup => {
                        core.handle(core_now(), Input::AgentHangup)
                    }
                    FromAgent::SendDtmf(digits) => {
                        for digit in digits.chars() {
                            media.send_dtmf(digit, DTMF_SEND_MS);
                        }
                    }
                    FromAgent::Transfer { id, target } => core.handle(
                        core_now(),
                        Input::TransferRequested { id, target },
                    ),
                    FromAgent::Turn(times) => {
                        turns.push(times);
                        core.handle(core_now(), Input::TurnCompleted);
                    }
                    FromAgent::Transcript(lines) => transcript = lines,
                },
                Some(cause) = hangup_requests.recv(), if core.hung_up().is_none() => {
                    core.handle(core_now(), Input::HangupRequested(cause))
                }
            }
        };
        if let Some(a) = agent.take() {
            stop_agent(a, &mut turns, &mut transcript).await;
        }
        let settled = lease.release(tokio::time::Instant::now(), !terminate).await;
        let stats = media.stop().await;
        let v2v: Vec<u64> = turns
            .iter()
            .filter_map(|t| t.voice_to_voice().map(|d| d.as_millis() as u64))
            .collect();
        tracing::info!(?reason, ?stats, turns = turns.len(), voice_to_voice_ms = ?v2v, "call ended");
        self.remember(&ctx, &transcript);
        self.record.transcript(transcript);
        self.record.ended(
            reason,
            core.hung_up(),
            stats.as_deref(),
            &turns,
            settled.as_ref(),
        )
    }

    /// What the call core's decision to end the call is logged and counted as.
    pub(super) fn hang_up_for(&self, cause: HangupCause) {
        hang_up_for(&self.ctx, cause)
    }

    /// The person on the line (the caller, or whom we called), as a number.
    fn other_party(&self) -> Option<String> {
        let cdr = self.record.cdr();
        // A browser's caller may be a web visitor (`web:<id>`), as on the web chat.
        if cdr.channel == "webrtc" && cdr.from_uri.starts_with(crate::store::contacts::WEB_PREFIX) {
            return Some(cdr.from_uri.clone());
        }
        if cdr.direction == "outbound" {
            dialled(&cdr.to_uri)
        } else {
            dialled(&cdr.from_uri)
        }
    }

    /// What the agent knows of the person on the line, and how to text them.
    async fn caller(&self, ctx: &CallContext) -> agent_session::Caller {
        let Some(address) = self.other_party() else {
            return agent_session::Caller::default();
        };
        let cdr = self.record.cdr();
        let account_id = cdr.account_id.clone();
        let ours = if cdr.direction == "outbound" {
            dialled(&cdr.from_uri)
        } else {
            cdr.number.clone()
        };
        let channels = &ctx.channels;
        let recall = channels.memory.for_call(&account_id, &address).await;
        let texted = !address.starts_with(crate::store::contacts::WEB_PREFIX);
        let sms = (channels.sms.enabled() && texted).then(|| agent_session::SmsLink {
            sender: Arc::new(channels.sms.clone()),
            account_id: account_id.clone(),
            to: address.clone(),
            from: ours,
        });
        match recall {
            Some(r) => agent_session::Caller {
                context: r.context,
                greet_known: channels.memory.config().greet_known,
                language: r.contact.language,
                sms,
            },
            None => agent_session::Caller {
                sms,
                ..Default::default()
            },
        }
    }

    /// Puts the call on the timeline of the person on the line (a summary, made after the
    /// call so it delays nothing).
    fn remember(&self, ctx: &Arc<CallContext>, transcript: &serde_json::Value) {
        let Some(address) = self.other_party() else {
            return;
        };
        let lines = transcript.as_array().map_or(0, Vec::len);
        if lines == 0 {
            return;
        }
        let cdr = self.record.cdr();
        let (account_id, cdr_id) = (cdr.account_id.clone(), cdr.id.clone());
        let duration_s = cdr
            .answered_at
            .map_or(0, |at| (crate::store::now_ms() - at) / 1000);
        let llm = match &ctx.agent {
            Some(CallAgent::Ai(rt)) => Some(rt.llm.clone()),
            _ => None,
        };
        let memory = ctx.channels.memory.clone();
        let transcript = transcript.clone();
        tokio::spawn(async move {
            memory
                .remember_call(
                    &account_id,
                    &address,
                    &cdr_id,
                    &transcript,
                    duration_s,
                    llm.as_ref(),
                )
                .await
        });
    }
}

/// What the call core's decision to end a call is logged and counted as.
pub(super) fn hang_up_for(ctx: &CallContext, cause: HangupCause) {
    let metrics = &ctx.metrics;
    match cause {
        HangupCause::Agent => tracing::info!("the agent ended the call"),
        HangupCause::Api => tracing::info!("hanging up as the API asked"),
        HangupCause::Drain => tracing::info!("the drain's time is up, hanging up"),
        HangupCause::MediaTimeout => {
            tracing::info!(
                timeout_s = ctx.config.media.rtp_timeout_s,
                "no RTP, hanging up"
            );
            Metrics::inc(&metrics.calls_rtp_timeout);
        }
        HangupCause::Credit => {
            tracing::info!("the call's credit ran out, hanging up");
            Metrics::inc(&metrics.calls_ended_credit);
        }
        HangupCause::LeaseClosed => tracing::warn!("the billing lease is closed, hanging up"),
        HangupCause::MaxDuration => {
            tracing::info!("maximum call duration reached, hanging up")
        }
        HangupCause::Transferred => tracing::info!("the caller was transferred, hanging up"),
        HangupCause::NoAnswer => tracing::info!("no answer, cancelling"),
    }
}
