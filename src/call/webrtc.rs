//! Browser calls (WebRTC): the WHIP endpoint's offer becomes a call like any other (routing
//! to an account's agent, a billing lease, the account's call limit, the live-call list,
//! events and a record with `channel: "webrtc"`), with its media on the media workers'
//! shared WebRTC port instead of an RTP port, and the browser's WHIP `DELETE` or its peer
//! connection closing as the remote hang-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::sync::atomic::Ordering;
use std::time::Duration;

use parley_media::codec::CodecKind;
use parley_media::session::SessionParams;
use parley_media::webrtc::OfferError;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::lease::CallLease;
use super::manager::{agent_for, go_live, start_media, ActiveGuard, Call, CallContext, InCall};
use super::media::Transport;
use super::record::CallRecord;
use super::signalling::{self, Signal, Signalling};
use crate::metrics::Metrics;
use crate::store::contacts::WEB_PREFIX;
use crate::store::{random_id, StoreError};

/// What the WHIP endpoint asks for, once it has checked the bearer token.
#[derive(Debug, Clone)]
pub struct BrowserCallRequest {
    /// The browser's SDP offer (`application/sdp`).
    pub offer: String,
    pub account_id: String,
    /// The token's agent; the account's default (the configured agent) when `None`.
    pub agent_id: Option<String>,
    /// Who is calling, as the contact's address: a phone number (E.164) joins that person's
    /// timeline; `web:<id>` a web visitor's. `None`: an anonymous caller.
    pub contact: Option<String>,
    /// The page's `Origin`, for the log.
    pub origin: Option<String>,
}

/// The call started: its id (the CDR's and `/v1/calls`'s) and the SDP answer.
#[derive(Debug, Clone)]
pub struct BrowserCallAnswer {
    pub id: String,
    pub sdp: String,
}

/// Why a browser call was not started (the WHIP response's status in brackets).
#[derive(Debug, thiserror::Error)]
pub enum BrowserCallRefusal {
    /// Browser calls are off (`webrtc.enabled = false`) [404].
    #[error("browser calls are disabled on this node (webrtc.enabled = false)")]
    Disabled,
    /// The SDP cannot be parsed [400].
    #[error("malformed SDP offer: {0}")]
    BadSdp(String),
    /// The offer has no audio, or no Opus [406].
    #[error("{0}")]
    NotAcceptable(String),
    /// No credit for a call [402].
    #[error("the account has no credit for a call")]
    NoCredit,
    /// The account holds its concurrent-call limit [429].
    #[error("the account has {0} calls in progress, its limit")]
    CallLimit(i64),
    /// The node is draining [503].
    #[error("the node is shutting down")]
    Draining,
    /// At capacity or something Parley needs failed [503].
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl BrowserCallRefusal {
    /// The HTTP status the WHIP endpoint answers with.
    pub fn status(&self) -> u16 {
        match self {
            BrowserCallRefusal::Disabled => 404,
            BrowserCallRefusal::BadSdp(_) => 400,
            BrowserCallRefusal::NotAcceptable(_) => 406,
            BrowserCallRefusal::NoCredit => 402,
            BrowserCallRefusal::CallLimit(_) => 429,
            BrowserCallRefusal::Draining | BrowserCallRefusal::Unavailable(_) => 503,
        }
    }
}

/// The HTTP layer's way to start and end browser calls; cheap to clone.
#[derive(Clone)]
pub struct BrowserCalls {
    ctx: Option<Arc<CallContext>>,
    /// The calls in progress on this node: their remote hang-up (the WHIP `DELETE`).
    ends: Arc<Mutex<HashMap<String, Ending>>>,
}

/// How the WHIP resource's owner ends its call.
struct Ending {
    account_id: String,
    hang_up: mpsc::UnboundedSender<()>,
}

impl BrowserCalls {
    pub fn new(ctx: Arc<CallContext>) -> BrowserCalls {
        BrowserCalls {
            ctx: Some(ctx),
            ends: Arc::default(),
        }
    }

    /// For an API without calls (tests of the HTTP layer alone): every call is refused as
    /// disabled.
    pub fn disabled() -> BrowserCalls {
        BrowserCalls {
            ctx: None,
            ends: Arc::default(),
        }
    }

    /// Starts a browser call: the media peer and SDP answer, routing, the account's call
    /// limit, the billing lease, then the conversation in a task of its own.
    pub async fn start(
        &self,
        request: BrowserCallRequest,
    ) -> Result<BrowserCallAnswer, BrowserCallRefusal> {
        let ctx = self
            .ctx
            .as_ref()
            .filter(|c| c.config.webrtc.enabled)
            .ok_or(BrowserCallRefusal::Disabled)?;
        let answerer = ctx.webrtc.as_ref().ok_or_else(|| {
            BrowserCallRefusal::Unavailable("the WebRTC port is not open on this node".into())
        })?;
        if ctx.drain.draining() {
            Metrics::inc(&ctx.metrics.calls_rejected_capacity);
            return Err(BrowserCallRefusal::Draining);
        }
        if ctx.metrics.active_calls.load(Ordering::Relaxed) >= i64::from(ctx.config.sip.max_calls) {
            Metrics::inc(&ctx.metrics.calls_rejected_capacity);
            return Err(BrowserCallRefusal::Unavailable("at capacity".into()));
        }
        let (peer, answer) = answerer
            .answer(&request.offer, std::time::Instant::now())
            .map_err(|e| match e {
                OfferError::Malformed(why) => BrowserCallRefusal::BadSdp(why),
                OfferError::NotAcceptable(why) => BrowserCallRefusal::NotAcceptable(why.into()),
            })?;
        let call_id = random_id("webrtc-", 24);
        let from = match &request.contact {
            Some(c) if c.starts_with(WEB_PREFIX) => c.clone(),
            Some(number) => format!("tel:{number}"),
            None => "anonymous".to_string(),
        };
        let mut record = CallRecord::inbound(&call_id, &from, "webrtc")
            .from_browser()
            .on_node(ctx.config.redis.node_name());
        Metrics::inc(&ctx.metrics.calls_total);
        let route = match ctx
            .store
            .route(
                None,
                Some((&request.account_id, request.agent_id.as_deref())),
                None,
            )
            .await
        {
            Ok(Some(route)) => route,
            Ok(None) => return Err(BrowserCallRefusal::Unavailable("no route".into())),
            Err(e) => {
                tracing::error!(error = %e, "cannot route a browser call");
                return Err(BrowserCallRefusal::Unavailable(format!(
                    "cannot route: {e}"
                )));
            }
        };
        record.routed(&route);
        let (profile, who) = agent_for(ctx, &route);
        let span = tracing::info_span!("call", call_id = %call_id, channel = "webrtc");
        let _entered = span.enter();
        tracing::info!(account = %route.account_id, agent = ?route.agent_id, origin = ?request.origin, "browser call");
        ctx.metrics.active_calls.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(ctx.metrics.clone());
        let slot = match ctx
            .limits
            .acquire(&route.account_id, &record.cdr().id)
            .await
        {
            Ok(slot) => slot,
            Err(limit) => {
                Metrics::inc(&ctx.metrics.calls_rejected_limit);
                self.refused(ctx, record.refused(429, "call_limit"));
                return Err(BrowserCallRefusal::CallLimit(limit));
            }
        };
        let (live, hangup_requests) = go_live(ctx, &record, "ringing");
        let heartbeat = Duration::from_secs(ctx.config.billing.heartbeat_s);
        let lease = match CallLease::reserve(
            &ctx.store,
            &ctx.metrics,
            &route.account_id,
            &call_id,
            heartbeat,
        )
        .await
        {
            Ok(lease) => lease,
            Err(StoreError::Insufficient) => {
                Metrics::inc(&ctx.metrics.calls_rejected_credit);
                self.refused(ctx, record.refused(402, "no_credit"));
                return Err(BrowserCallRefusal::NoCredit);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reserve the browser call's billing lease");
                self.refused(ctx, record.refused(503, "unavailable"));
                return Err(BrowserCallRefusal::Unavailable(
                    "cannot reserve the billing lease".into(),
                ));
            }
        };
        let params = SessionParams {
            codec: CodecKind::Opus,
            payload_type: peer.payload_type(),
            dtmf_payload_type: None,
            // str0m sends to where ICE found the browser; the session needs a destination.
            remote: Some(answerer.candidate()),
            send: true,
            receive: true,
        };
        let (media, agent_audio) = match start_media(
            ctx,
            &call_id,
            Transport::WebRtc(Box::new(peer)),
            params,
            who.is_some(),
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the browser call's media");
                Metrics::inc(&ctx.metrics.calls_rejected_media);
                lease.release(tokio::time::Instant::now(), false).await;
                self.refused(ctx, record.refused(503, "unavailable"));
                return Err(BrowserCallRefusal::Unavailable(format!("media: {e}")));
            }
        };
        let id = record.cdr().id.clone();
        let (hang_up, hangups) = mpsc::unbounded_channel();
        self.ends.lock().expect("browser calls lock").insert(
            id.clone(),
            Ending {
                account_id: route.account_id.clone(),
                hang_up,
            },
        );
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
        let call = Call {
            ctx: ctx.clone(),
            call_id,
            record,
            _guard: guard,
        };
        let (ctx, ends, key) = (ctx.clone(), self.ends.clone(), id.clone());
        drop(_entered);
        tokio::spawn(
            async move {
                let signalling = BrowserSignalling {
                    hangups,
                    ended: None,
                };
                let cdr = call.converse(in_call, Some("opus"), signalling).await;
                drop(slot);
                ends.lock().expect("browser calls lock").remove(&key);
                ctx.events
                    .publish("call.ended", &cdr.account_id, serde_json::json!(cdr));
                ctx.cdrs.write(cdr).await;
            }
            .instrument(span),
        );
        Ok(BrowserCallAnswer { id, sdp: answer })
    }

    /// A refused call's record and its `call.ended` event.
    fn refused(&self, ctx: &Arc<CallContext>, cdr: crate::store::cdr::Cdr) {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.events
                .publish("call.ended", &cdr.account_id, serde_json::json!(cdr));
            ctx.cdrs.write(cdr).await;
        });
    }

    /// The browser hung up (WHIP `DELETE`): false when this node has no such call of the
    /// account.
    pub fn hang_up(&self, id: &str, account_id: &str) -> bool {
        let ends = self.ends.lock().expect("browser calls lock");
        match ends.get(id) {
            Some(e) if e.account_id == account_id => e.hang_up.send(()).is_ok(),
            _ => false,
        }
    }

    /// `[webrtc]` as configured (origins for CORS, ICE servers for browsers).
    pub fn config(&self) -> crate::config::webrtc::WebRtcConfig {
        self.ctx
            .as_ref()
            .map(|c| c.config.webrtc.clone())
            .unwrap_or_default()
    }
}

/// A browser call's signalling: its WHIP resource. The browser hangs up with `DELETE` (or by
/// closing its peer connection, which the media reports); Parley hangs up by closing the
/// peer (the media's removal sends the RTCP BYE and DTLS close_notify). No transfers.
struct BrowserSignalling {
    hangups: mpsc::UnboundedReceiver<()>,
    /// Set when Parley hung up: the next signal says so.
    ended: Option<signalling::Ending>,
}

impl Signalling for BrowserSignalling {
    fn hang_up(&mut self) {
        self.ended = Some(signalling::Ending::local());
    }

    fn refer(&mut self, target: String) -> bool {
        tracing::info!(%target, "a browser call cannot be transferred");
        false
    }

    async fn next(&mut self) -> Signal {
        if let Some(ending) = self.ended.take() {
            return Signal::Ended(ending);
        }
        match self.hangups.recv().await {
            Some(()) => Signal::Ended(signalling::Ending::remote("browser_hangup")),
            // Every sender gone: only Parley's own hang-up can end the call now.
            None => std::future::pending().await,
        }
    }
}
