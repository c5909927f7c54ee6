//! Outbound calls the API asks for (`POST /v1/calls`): a billing lease first (no call without
//! a grant), then an INVITE through a configured trunk; once the callee answers, the call is
//! the same as an inbound one, with the account's agent (or the config file's) speaking.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::core::{Action, CallCore, HangupCause, Input};
use super::lease::CallLease;
use super::limits::{CallLimits, CallSlot};
use super::manager::{agent_for, core_now, ActiveGuard, CallManager, InCall, Offer, Session};
use super::ports::RtpPorts;
use super::record::CallRecord;
use super::registry::{LiveCall, LiveEntry};
use crate::agent::session::sleep_until;
use crate::config::trunks::TrunkConfig;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sip::auth::Credentials;
use crate::sip::endpoint::{EndReason, Event, Invite, Peer, TransportKind};
use crate::sip::next_hop;
use crate::sip::runtime::{self, Command};
use crate::sip::sdp::{self, Direction, LocalCaps, Origin, SessionDescription};
use crate::store::directory::{e164, Route};
use crate::store::{random_id, Store, StoreError};

/// How long the callee's phone may ring before Parley gives up (CANCEL).
const RING_TIMEOUT: Duration = Duration::from_secs(60);

/// What the API asks for.
#[derive(Debug, Clone)]
pub struct Originate {
    pub account_id: String,
    /// E.164.
    pub to: String,
    /// The caller ID (E.164); the trunk's when `None`.
    pub from: Option<String>,
    /// The trunk by name; the only one when `None` and one is configured.
    pub trunk: Option<String>,
    /// The account's agent that speaks; the config file's when `None`.
    pub agent_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    /// A request field is wrong: (field, why).
    #[error("{1}")]
    Field(&'static str, String),
    #[error("the account has no credit for a call")]
    NoCredit,
    #[error("the account has {0} calls in progress, its limit")]
    CallLimit(i64),
    #[error("cannot reach the trunk: {0}")]
    Unreachable(String),
    #[error("at capacity: {0}")]
    Busy(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A call to place, checked and paid for, as the originator hands it to the call manager.
pub struct Dial {
    request: Originate,
    trunk: TrunkConfig,
    peer: Peer,
    route: Route,
    call_id: String,
    lease: CallLease,
    /// Its place in the account's concurrent calls, held until the call ends.
    slot: CallSlot,
    reply: oneshot::Sender<Result<LiveCall, OriginateError>>,
}

/// The API's way to place calls; cheap to clone.
#[derive(Clone)]
pub struct Originator {
    config: Arc<Config>,
    store: Store,
    metrics: Arc<Metrics>,
    limits: CallLimits,
    manager: mpsc::UnboundedSender<Dial>,
}

impl Originator {
    /// The originator and the receiving end the call manager serves.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        metrics: Arc<Metrics>,
        limits: CallLimits,
    ) -> (Originator, mpsc::UnboundedReceiver<Dial>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let originator = Originator {
            config,
            store,
            metrics,
            limits,
            manager: tx,
        };
        (originator, rx)
    }

    fn trunk(&self, name: Option<&str>) -> Result<TrunkConfig, OriginateError> {
        let trunks = &self.config.sip.trunks;
        let found = match name {
            Some(name) => trunks.iter().find(|t| t.name == name),
            None if trunks.len() == 1 => trunks.first(),
            None if trunks.is_empty() => None,
            None => {
                return Err(OriginateError::Field(
                    "trunk",
                    "several trunks are configured; name one".into(),
                ))
            }
        };
        found.cloned().ok_or_else(|| {
            let known: Vec<&str> = trunks.iter().map(|t| t.name.as_str()).collect();
            let why = if known.is_empty() {
                "no trunk is configured (sip.trunks)".to_string()
            } else {
                format!("no such trunk; configured: {}", known.join(", "))
            };
            OriginateError::Field("trunk", why)
        })
    }

    /// Places the call: checks the request, reserves its lease, sends the INVITE; the call
    /// as it is listed live (state `dialing`).
    pub async fn originate(&self, request: Originate) -> Result<LiveCall, OriginateError> {
        let to = e164(&request.to).ok_or_else(|| {
            OriginateError::Field(
                "to",
                "expected an E.164 number like \"+15551234567\"".into(),
            )
        })?;
        let from = match &request.from {
            Some(f) => Some(e164(f).ok_or_else(|| {
                OriginateError::Field(
                    "from",
                    "expected an E.164 number like \"+15551230000\"".into(),
                )
            })?),
            None => None,
        };
        let trunk = self.trunk(request.trunk.as_deref())?;
        let agent = match &request.agent_id {
            Some(id) => match self.store.agent(&request.account_id, id).await {
                Ok(a) => Some(a),
                Err(StoreError::NotFound(_)) => {
                    return Err(OriginateError::Field("agent_id", "no such agent".into()))
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let peer = resolve(&trunk).await.map_err(OriginateError::Unreachable)?;
        let call_id = format!("{}@parley", random_id("", 20));
        let slot = self
            .limits
            .acquire(&request.account_id, &call_id)
            .await
            .map_err(|limit| {
                Metrics::inc(&self.metrics.calls_rejected_limit);
                OriginateError::CallLimit(limit)
            })?;
        let heartbeat = Duration::from_secs(self.config.billing.heartbeat_s);
        let lease = CallLease::reserve(
            &self.store,
            &self.metrics,
            &request.account_id,
            &call_id,
            heartbeat,
        )
        .await
        .map_err(|e| match e {
            StoreError::Insufficient => OriginateError::NoCredit,
            other => other.into(),
        })?;
        let route = Route {
            account_id: request.account_id.clone(),
            agent_id: agent.as_ref().map(|a| a.id.clone()),
            number: Some(to.clone()),
            agent: agent.map(|a| (a.config, a.updated_at)),
        };
        let request = Originate {
            to,
            from,
            ..request
        };
        let (reply, answer) = oneshot::channel();
        let dial = Dial {
            request,
            trunk,
            peer,
            route,
            call_id,
            lease,
            slot,
            reply,
        };
        if self.manager.send(dial).is_err() {
            return Err(OriginateError::Busy("the call manager has stopped"));
        }
        answer
            .await
            .map_err(|_| OriginateError::Busy("the call manager has stopped"))?
    }
}

/// The trunk's proxy as a next hop (an A/AAAA lookup; no NAPTR/SRV).
async fn resolve(trunk: &TrunkConfig) -> Result<Peer, String> {
    let transport = if trunk.transport == "tcp" {
        TransportKind::Tcp
    } else {
        TransportKind::Udp
    };
    next_hop::lookup(&trunk.host_port(), transport).await
}

impl CallManager {
    /// Sends the INVITE of `dial` and starts the session that follows it.
    pub(super) async fn dial(&mut self, dial: Dial) {
        let ctx = self.ctx.clone();
        let Dial {
            request,
            trunk,
            peer,
            route,
            call_id,
            lease,
            slot,
            reply,
        } = dial;
        let refuse = |reply: oneshot::Sender<_>, lease: CallLease, why: &'static str| {
            tracing::info!(why, "not placing the call");
            let _ = reply.send(Err(OriginateError::Busy(why)));
            tokio::spawn(async move { lease.release(tokio::time::Instant::now(), false).await });
        };
        if ctx.drain.draining() {
            return refuse(reply, lease, "Parley is shutting down");
        }
        if ctx.metrics.active_calls.load(Ordering::Relaxed) >= ctx.config.sip.max_calls as i64 {
            Metrics::inc(&ctx.metrics.calls_rejected_capacity);
            return refuse(reply, lease, "sip.max_calls calls are in progress");
        }
        let Some(ports) = ctx.ports.allocate() else {
            Metrics::inc(&ctx.metrics.calls_rejected_media);
            return refuse(reply, lease, "no free RTP ports");
        };
        let local_ip = ctx
            .config
            .sip
            .external_ip
            .unwrap_or_else(|| runtime::local_ip_toward(peer.addr.ip()));
        let origin = Origin::new(local_ip, &mut self.rng);
        let offer = sdp::offer(
            &LocalCaps::default(),
            local_ip,
            ports.port,
            &origin,
            Direction::SendRecv,
        );
        let from = request
            .from
            .clone()
            .or_else(|| trunk.from.clone())
            .unwrap_or_else(|| "parley".into());
        let target = trunk.target(&request.to);
        let credentials = match (&trunk.username, &trunk.password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.expose().to_string(),
            }),
            _ => None,
        };
        let (placed, placed_rx) = oneshot::channel();
        ctx.sip.send(Command::Invite {
            invite: Invite {
                target: target.clone(),
                from_user: from.clone(),
                sdp: offer.to_string().into_bytes(),
                credentials,
                call_id: Some(call_id.clone()),
            },
            peer,
            reply: placed,
        });
        let Ok((call, local)) = placed_rx.await else {
            return refuse(reply, lease, "the SIP stack has stopped");
        };
        Metrics::inc(&ctx.metrics.calls_total);
        ctx.metrics.active_calls.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(ctx.metrics.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        self.calls.insert(call, tx);
        let mut record = CallRecord::outbound(
            &call_id,
            &format!("sip:{from}@{local}"),
            &target,
            &trunk.name,
        )
        .on_node(ctx.config.redis.node_name());
        record.routed(&route);
        let session = Session {
            ctx: ctx.clone(),
            call,
            call_id: call_id.clone(),
            origin,
            media: Offer::Ours(offer),
            dialled: Some(request.to.clone()),
            trunk: Some(trunk.clone()),
            record,
            _guard: guard,
        };
        let (live, hangups) = session.go_live("dialing");
        let listed = ctx.live.get(&session.record.cdr().id);
        let _ = reply.send(listed.ok_or(OriginateError::Busy("the call ended at once")));
        tracing::info!(%call_id, to = %request.to, trunk = %trunk.name, "placing a call");
        let span = tracing::info_span!("call", call_id = %call_id);
        tokio::spawn(
            async move {
                let _slot = slot;
                if let Some(cdr) = session.dial(ports, lease, route, live, hangups, rx).await {
                    ctx.events
                        .publish("call.ended", &cdr.account_id, serde_json::json!(cdr));
                    ctx.cdrs.write(cdr).await;
                }
            }
            .instrument(span),
        );
    }
}

impl Session {
    /// The placed call from ringing to hang-up; its detail record.
    async fn dial(
        mut self,
        ports: RtpPorts,
        lease: CallLease,
        route: Route,
        live: LiveEntry,
        mut hangups: mpsc::UnboundedReceiver<HangupCause>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Option<crate::store::cdr::Cdr> {
        let ctx = self.ctx.clone();
        let call = self.call;
        let mut core = CallCore::dialling(core_now(), RING_TIMEOUT);
        let answered = loop {
            // Before the answer the core only ever ends the call (a CANCEL).
            while let Some(action) = core.poll_action() {
                if let Action::Hangup(cause) = action {
                    super::manager::hang_up_for(&self.ctx, cause);
                    ctx.sip.send(Command::Hangup { call });
                }
            }
            let wake = core.next_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::Progress { code, .. }) if (180..=183).contains(&code) => {
                        live.state("ringing");
                    }
                    Some(Event::Answered { response, .. }) => break Ok(response),
                    Some(Event::Ended { reason, .. }) => break Err(Some(reason)),
                    None => break Err(None),
                    Some(_) => {}
                },
                Some(cause) = hangups.recv(), if core.hung_up().is_none() => {
                    core.handle(core_now(), Input::HangupRequested(cause));
                }
                _ = sleep_until(wake) => core.handle_timeout(core_now()),
            }
        };
        let response = match answered {
            Ok(response) => response,
            Err(reason) => {
                tracing::info!(?reason, "the call was not answered");
                lease.release(tokio::time::Instant::now(), false).await;
                return Some(self.record.not_answered(reason.as_ref()));
            }
        };
        let Offer::Ours(offer) = &self.media else {
            return None;
        };
        let accepted = std::str::from_utf8(&response.body)
            .map_err(|e| e.to_string())
            .and_then(|s| SessionDescription::parse(s).map_err(|e| e.to_string()))
            .and_then(|a| sdp::accept_answer(offer, &a).map_err(|e| e.to_string()));
        let negotiated = match accepted {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "the answer's SDP is unusable, hanging up");
                return self.give_up(lease, &mut events).await;
            }
        };
        let (profile, who) = agent_for(&ctx, &route);
        let params = super::media::session_params(&negotiated);
        let (media, agent_audio) = match self.start_media(ports, params, who.is_some()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot start media, hanging up");
                return self.give_up(lease, &mut events).await;
            }
        };
        self.media = Offer::Answered {
            answer: offer.clone(),
            negotiated,
        };
        let in_call = InCall {
            media,
            lease,
            live,
            hangup_requests: hangups,
            who,
            agent_audio,
            profile,
            core: Some(core),
        };
        Some(self.converse(in_call, events).await)
    }

    /// Hangs up an answered call that cannot go on, and records it.
    async fn give_up(
        self,
        lease: CallLease,
        events: &mut mpsc::UnboundedReceiver<Event>,
    ) -> Option<crate::store::cdr::Cdr> {
        self.ctx.sip.send(Command::Hangup { call: self.call });
        let reason = loop {
            match events.recv().await {
                Some(Event::Ended { reason, .. }) => break Some(reason),
                None => break None,
                Some(_) => {}
            }
        };
        let settled = lease.release(tokio::time::Instant::now(), false).await;
        Some(self.record.ended(
            super::signalling::Ending::from_sip(reason.as_ref()),
            None,
            None,
            &[],
            settled.as_ref(),
        ))
    }
}

/// Why a placed call was not answered, for its record.
pub(super) fn unanswered_cause(reason: Option<&EndReason>) -> (&'static str, i64) {
    match reason {
        Some(EndReason::Failed(code)) | Some(EndReason::Rejected(code)) => {
            let cause = match code {
                486 | 600 => "busy",
                408 | 480 => "no_answer",
                487 => "cancelled",
                404 | 484 | 604 => "unknown_number",
                _ => "failed",
            };
            (cause, i64::from(*code))
        }
        Some(EndReason::Cancelled) => ("cancelled", 487),
        _ => ("failed", 0),
    }
}
