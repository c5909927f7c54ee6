//! The user agent core: one sans-I/O state machine that owns every transaction and dialog of
//! the process, turns datagrams into events for the call layer, and commands from the call
//! layer into messages. It follows str0m's shape: `handle_*(now, …)` in, `poll_output()` out,
//! `next_timeout()` / `handle_timeout(now)` for time; no sockets and no clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::auth;
use super::dialog::{Dialog, DialogId, DialogState};
use super::headers::{HostPort, NameAddr, SipUri, Via, MAGIC_COOKIE};
use super::message::{self, Core, Message, Method, ParseError, Request, Response};
use super::transaction::{
    InviteClient, InviteServer, InviteServerState, NonInviteClient, NonInviteServer,
    Output as TxOutput, ResponseDisposition, TimerConfig, Transaction,
};

/// Methods Parley answers, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY";
/// Option tags Parley supports; any other tag in Require gets 420.
pub const SUPPORTED: &[&str] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
    pub fn reliable(self) -> bool {
        self == TransportKind::Tcp
    }
}

/// Where a message came from or goes to. `conn` names an open TCP connection to reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
    pub conn: Option<u64>,
}

/// A call's handle, stable from the first INVITE to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

impl std::fmt::Display for CallRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent BYE.
    RemoteBye,
    /// We sent BYE (and got an answer or gave up waiting).
    LocalBye,
    /// The caller cancelled before we answered.
    Cancelled,
    /// Our 2xx was never acknowledged; we sent BYE (RFC 3261 §13.3.1.4).
    AckTimeout,
    /// We rejected the call with a final non-2xx response.
    Rejected(u16),
    /// Our outbound INVITE failed with this status (408 for no answer at all).
    Failed(u16),
}

/// What the call layer learns.
#[derive(Debug, Clone)]
pub enum Event {
    /// A dialog-creating INVITE. Answer it with `respond`.
    Incoming {
        call: CallRef,
        request: Request,
        peer: Peer,
        local: SocketAddr,
    },
    /// The ACK for our 2xx arrived (with its body, for a late offer).
    Confirmed { call: CallRef, body: Vec<u8> },
    /// A re-INVITE inside an established call. Answer it with `respond_reinvite`.
    Reinvite { call: CallRef, request: Request },
    /// A provisional response to our INVITE.
    Progress { call: CallRef, code: u16 },
    /// Our INVITE was answered; the ACK is already sent.
    Answered { call: CallRef, response: Response },
    /// The final response to our REFER (408 when none came): 2xx means the transferee
    /// accepted to try; the outcome follows in [`Event::TransferProgress`].
    ReferAnswered { call: CallRef, code: u16 },
    /// A NOTIFY of our REFER's implicit subscription (RFC 3515 §2.4.4): the status line of
    /// the transferee's call to the target (`message/sipfrag`), and whether it is the last.
    TransferProgress {
        call: CallRef,
        status: u16,
        terminated: bool,
    },
    /// The call is over; nothing more will be reported for it.
    Ended { call: CallRef, reason: EndReason },
}

/// What the endpoint asks its driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    Transmit { peer: Peer, bytes: Vec<u8> },
    Event(Event),
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    pub user_agent: String,
}

/// An outbound call request.
#[derive(Debug, Clone)]
pub struct Invite {
    pub target: String,
    pub from_user: String,
    pub sdp: Vec<u8>,
    pub credentials: Option<auth::Credentials>,
    /// The Call-ID to use; a random one when `None`.
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TxKey {
    /// RFC 3261 §17.2.3: branch, sent-by and method (ACK matches INVITE).
    Server {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// RFC 3261 §17.1.3: branch and CSeq method.
    Client { branch: String, method: String },
}

enum AnyTx {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
}

impl AnyTx {
    fn as_tx(&mut self) -> &mut dyn Transaction {
        match self {
            AnyTx::InviteServer(t) => t,
            AnyTx::NonInviteServer(t) => t,
            AnyTx::InviteClient(t) => t,
            AnyTx::NonInviteClient(t) => t,
        }
    }
}

/// Why we keep a client transaction: what to do with its responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientPurpose {
    Invite,
    Bye,
    Cancel,
    Refer,
}

struct TxEntry {
    key: TxKey,
    tx: AnyTx,
    peer: Peer,
    call: Option<CallRef>,
    purpose: Option<ClientPurpose>,
    /// The request this transaction carries (client) or answers (server). A server
    /// transaction drops it once its final response is sent: only the response bytes are
    /// needed for retransmissions, and the 32 s of Timer J/L would otherwise hold every request.
    request: Option<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Uas,
    Uac,
}

/// Retransmission of a 2xx to INVITE until its ACK (RFC 3261 §13.3.1.4): T1 doubling to T2,
/// giving up after 64*T1.
struct Pending2xx {
    cseq: u32,
    bytes: Vec<u8>,
    interval: Duration,
    next_at: Instant,
    give_up_at: Instant,
}

struct CallState {
    role: Role,
    peer: Peer,
    local: SocketAddr,
    dialog: Dialog,
    /// The dialog-creating INVITE's transaction while it has no final response.
    invite_tx: Option<u64>,
    /// Our INVITE (UAC), kept for CANCEL and authentication retries.
    invite: Option<Request>,
    invite_final: bool,
    answered: bool,
    cancel_wanted: bool,
    auth_tried: bool,
    credentials: Option<auth::Credentials>,
    redirects: u8,
    reinvite_tx: Option<u64>,
    pending_2xx: Option<Pending2xx>,
    bye_sent: bool,
    /// We sent a REFER: NOTIFYs of the refer package are expected.
    refer_sent: bool,
    /// The ACK we sent for the 2xx (UAC), replayed for retransmitted 2xx.
    ack_bytes: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerTarget {
    Tx(u64),
    Call(CallRef),
}

pub struct Endpoint {
    config: EndpointConfig,
    txs: HashMap<u64, TxEntry>,
    tx_index: HashMap<TxKey, u64>,
    next_id: u64,
    calls: HashMap<CallRef, CallState>,
    dialogs: HashMap<DialogId, CallRef>,
    /// Lazily-validated timer heap: an entry may be stale, and is checked when popped.
    timers: BinaryHeap<Reverse<(Instant, TimerTarget)>>,
    out: VecDeque<Output>,
    /// Set once the node drains: Retry-After seconds for its 503 to out-of-dialog OPTIONS.
    draining: Option<u32>,
    /// Every random value the endpoint makes (tags, branches, Call-IDs, first CSeqs, client
    /// nonces) comes from here: seeded in tests, so a run can be replayed exactly.
    rng: StdRng,
}

/// `len` random characters from `rng`, for tags, branches and Call-IDs.
fn random_token(rng: &mut StdRng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// A new Via branch: the RFC 3261 magic cookie and 16 random characters.
fn new_branch(rng: &mut StdRng) -> String {
    format!("{MAGIC_COOKIE}{}", random_token(rng, 16))
}

/// RFC 3261 §18.2.2: where responses to a request go, from its (received/rport-stamped) Via.
fn response_peer(via: Option<&Via>, source: Peer) -> Peer {
    let Some(via) = via else { return source };
    if source.transport.reliable() {
        return source;
    }
    let port = match via.params.value("rport").and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => via.sent_by.port.unwrap_or(5060),
    };
    let ip = via
        .params
        .value("received")
        .and_then(|r| r.parse().ok())
        .or_else(|| via.sent_by.bare_host().parse().ok())
        .unwrap_or(source.addr.ip());
    Peer {
        addr: SocketAddr::new(ip, port),
        ..source
    }
}

/// Adds `received` and fills `rport` in the top Via (RFC 3261 §18.2.1, RFC 3581 §4).
fn stamp_top_via(req: &mut Request, source: SocketAddr) -> Option<Via> {
    let values = req.headers.list("Via");
    let mut top = Via::parse(values.first()?).ok()?;
    let rest: Vec<String> = values[1..].iter().map(|s| s.to_string()).collect();
    let ip = source.ip().to_string();
    if top.sent_by.bare_host() != ip || top.params.has("rport") {
        top.params.0.retain(|(n, _)| n != "received");
        top.params.0.push(("received".into(), Some(ip)));
    }
    if let Some(slot) = top.params.0.iter_mut().find(|(n, _)| n == "rport") {
        slot.1 = Some(source.port().to_string());
    }
    req.headers.remove("Via");
    req.headers.push("Via", top.to_string());
    for v in rest {
        req.headers.push("Via", v);
    }
    Some(top)
}

fn server_key(req: &Request, core: &Core) -> TxKey {
    let via = core.top_via();
    let method = match req.method {
        Method::Ack => "INVITE".to_string(),
        ref m => m.as_str().to_string(),
    };
    let branch = if via.has_rfc3261_branch() {
        via.branch().unwrap_or_default().to_string()
    } else {
        // RFC 2543 peers: match on the fields §17.2.3 lists for them.
        format!(
            "2543|{}|{}|{}|{}|{}",
            req.uri,
            core.from.tag().unwrap_or_default(),
            core.call_id,
            core.cseq.seq,
            via
        )
    };
    TxKey::Server {
        branch,
        sent_by: via.sent_by.to_string().to_ascii_lowercase(),
        method,
    }
}

fn warning(code_reason: &str) -> String {
    let text: String = code_reason
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .take(200)
        .collect();
    format!("399 parley \"{text}\"")
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint::with_rng(config, StdRng::from_entropy())
    }

    /// An endpoint whose random values are all drawn from `seed`: two endpoints with the
    /// same seed fed the same inputs produce the same messages.
    pub fn with_seed(config: EndpointConfig, seed: u64) -> Endpoint {
        Endpoint::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: EndpointConfig, rng: StdRng) -> Endpoint {
        Endpoint {
            rng,
            config,
            txs: HashMap::new(),
            tx_index: HashMap::new(),
            next_id: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            draining: None,
        }
    }

    /// The node is draining: from now on an out-of-dialog OPTIONS is answered 503 with
    /// `Retry-After: retry_after_s`, so a dispatcher probing with OPTIONS (Kamailio's
    /// `ds_probing_mode`) takes the node out of its rotation. New INVITEs are refused by the
    /// call layer; dialogs in progress go on.
    pub fn set_draining(&mut self, retry_after_s: u32) {
        self.draining = Some(retry_after_s);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    pub fn next_timeout(&mut self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, target))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match target {
                TimerTarget::Tx(id) => {
                    let Some(entry) = self.txs.get_mut(&id) else {
                        continue;
                    };
                    let tx = entry.tx.as_tx();
                    if tx.next_timeout().is_some_and(|t| t <= now) {
                        tx.handle_timeout(now);
                        self.drain_tx(id);
                    }
                }
                TimerTarget::Call(call) => self.call_timer(now, call),
            }
        }
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn insert_tx(&mut self, entry: TxEntry) -> u64 {
        let id = self.alloc_id();
        self.tx_index.insert(entry.key.clone(), id);
        self.txs.insert(id, entry);
        self.drain_tx(id);
        id
    }

    /// Moves a transaction's outputs to ours, schedules its next timer, and reacts to its
    /// timeouts and termination.
    fn drain_tx(&mut self, id: u64) {
        let mut timeouts = Vec::new();
        let mut terminated = false;
        if let Some(entry) = self.txs.get_mut(&id) {
            let peer = entry.peer;
            let tx = entry.tx.as_tx();
            while let Some(o) = tx.poll_output() {
                match o {
                    TxOutput::Transmit(bytes) => {
                        self.out.push_back(Output::Transmit { peer, bytes })
                    }
                    TxOutput::Timeout(t) => timeouts.push(t),
                    TxOutput::Terminated => terminated = true,
                    TxOutput::Response { .. } => {}
                }
            }
            if let Some(at) = tx.next_timeout() {
                self.timers.push(Reverse((at, TimerTarget::Tx(id))));
            }
        }
        for _ in timeouts {
            self.on_tx_timeout(id);
        }
        if terminated {
            if let Some(entry) = self.txs.remove(&id) {
                self.tx_index.remove(&entry.key);
            }
        }
    }

    fn on_tx_timeout(&mut self, id: u64) {
        let Some(entry) = self.txs.get(&id) else {
            return;
        };
        let (call, purpose) = (entry.call, entry.purpose);
        let Some(call) = call else { return };
        match (entry.tx_is_invite_server(), purpose) {
            // Timer H: our non-2xx final was never ACKed. The call is already over.
            (true, _) => {}
            (false, Some(ClientPurpose::Invite)) => self.end_call(call, EndReason::Failed(408)),
            (false, Some(ClientPurpose::Bye)) => self.end_call(call, EndReason::LocalBye),
            (false, Some(ClientPurpose::Refer)) => {
                self.event(Event::ReferAnswered { call, code: 408 })
            }
            _ => {}
        }
    }

    fn transmit(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit { peer, bytes });
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn end_call(&mut self, call: CallRef, reason: EndReason) {
        if let Some(state) = self.calls.remove(&call) {
            self.dialogs.remove(&state.dialog.id);
            self.event(Event::Ended { call, reason });
        }
    }

    // -----------------------------------------------------------------------------------
    // Input

    /// A datagram or a framed stream message arrived from `peer`; `local` is our address
    /// as that peer sees it (for Contact and Via).
    pub fn handle_message(&mut self, now: Instant, peer: Peer, local: SocketAddr, bytes: &[u8]) {
        match message::parse(bytes) {
            Ok(Message::Request(req)) => self.on_request(now, peer, local, req),
            Ok(Message::Response(resp)) => self.on_response(now, resp),
            Err(e) => self.on_parse_error(peer, e),
        }
    }

    /// A malformed request gets a stateless error response with a Warning saying why; a
    /// malformed response or unreadable bytes are dropped (RFC 3261 §16.7 and §18.1.2).
    fn on_parse_error(&mut self, peer: Peer, e: ParseError) {
        tracing::debug!(peer = %peer.addr, reason = %e.reason, "rejecting malformed message");
        let Some(mut req) = e.partial.map(|b| *b) else {
            return;
        };
        if req.method == Method::Ack {
            return;
        }
        let top = stamp_top_via(&mut req, peer.addr);
        let mut resp = Response::to(&req, e.status, Some(&random_token(&mut self.rng, 8)));
        if resp.headers.get("Via").is_none() {
            // No usable Via: answer the source, which is all we know.
            resp.headers
                .push("Via", format!("SIP/2.0/UDP {}", peer.addr));
        }
        resp.headers.push("Warning", warning(&e.reason));
        resp.headers.push("Server", &self.config.user_agent);
        let resp = resp.finish();
        self.transmit(response_peer(top.as_ref(), peer), resp.to_bytes());
    }

    fn on_request(&mut self, now: Instant, peer: Peer, local: SocketAddr, mut req: Request) {
        let top = stamp_top_via(&mut req, peer.addr);
        let core = match req.core() {
            Ok(c) => c,
            Err(e) => {
                return self.on_parse_error(
                    peer,
                    ParseError {
                        partial: Some(Box::new(req)),
                        ..e
                    },
                )
            }
        };
        let reply_to = response_peer(top.as_ref(), peer);
        let key = server_key(&req, &core);

        // Retransmissions and ACKs for non-2xx finals belong to an existing transaction.
        if let Some(&id) = self.tx_index.get(&key) {
            if let Some(entry) = self.txs.get_mut(&id) {
                match (&mut entry.tx, &req.method) {
                    (AnyTx::InviteServer(tx), Method::Ack) => {
                        let accepted = tx.state() == InviteServerState::Accepted;
                        tx.on_ack(now);
                        if accepted {
                            // An ACK for a 2xx reusing the INVITE branch (RFC 2543 style).
                            self.on_ack_in_dialog(&req, &core);
                        }
                    }
                    (AnyTx::InviteServer(tx), _) => tx.on_request_retransmission(),
                    (AnyTx::NonInviteServer(tx), _) => tx.on_request_retransmission(),
                    _ => {}
                }
                self.drain_tx(id);
            }
            return;
        }

        match req.method {
            Method::Ack => return self.on_ack_in_dialog(&req, &core),
            Method::Cancel => return self.on_cancel(now, reply_to, req, key),
            _ => {}
        }

        let tx_id = self.new_server_tx(key, reply_to, &req);
        let to_tag = core.to.tag().map(str::to_string);

        if req
            .headers
            .get("Max-Forwards")
            .is_some_and(|mf| mf.trim() == "0")
        {
            return self.reply(now, tx_id, &req, 483, |_| {});
        }
        let unsupported: Vec<String> = req
            .headers
            .list("Require")
            .into_iter()
            .filter(|tag| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)))
            .map(str::to_string)
            .collect();
        if !unsupported.is_empty() {
            return self.reply(now, tx_id, &req, 420, |r| {
                r.headers.push("Unsupported", unsupported.join(", "));
            });
        }

        if req.method == Method::Invite {
            if let Some((code, why)) = unacceptable_body(&req) {
                return self.reply(now, tx_id, &req, code, |r| {
                    r.headers.push("Accept", "application/sdp");
                    r.headers.push("Warning", warning(why));
                });
            }
        }

        if let Some(to_tag) = to_tag {
            return self.on_in_dialog_request(now, tx_id, req, &core, to_tag);
        }

        match req.method {
            Method::Invite => self.on_new_invite(now, tx_id, peer, local, req, &core),
            Method::Options => match self.draining {
                Some(retry_after) => self.reply(now, tx_id, &req, 503, |r| {
                    r.headers.push("Retry-After", retry_after.to_string());
                    r.headers.push("Warning", warning("draining: no new calls"));
                }),
                None => self.reply(now, tx_id, &req, 200, |r| {
                    r.headers.push("Allow", ALLOW);
                    r.headers.push("Accept", "application/sdp");
                    r.headers.push("Accept-Language", "en");
                    r.headers.push("Supported", SUPPORTED.join(", "));
                }),
            },
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(now, tx_id, &req, 481, |_| {})
            }
            _ => self.reply(now, tx_id, &req, 405, |r| r.headers.push("Allow", ALLOW)),
        }
    }

    fn new_server_tx(&mut self, key: TxKey, reply_to: Peer, req: &Request) -> u64 {
        let reliable = reply_to.transport.reliable();
        let tx = if req.method == Method::Invite {
            AnyTx::InviteServer(InviteServer::new(self.config.timers, reliable))
        } else {
            AnyTx::NonInviteServer(NonInviteServer::new(self.config.timers, reliable))
        };
        self.insert_tx(TxEntry {
            key,
            tx,
            peer: reply_to,
            call: None,
            purpose: None,
            request: Some(req.clone()),
        })
    }

    /// Sends a response through a server transaction.
    fn reply(
        &mut self,
        now: Instant,
        tx_id: u64,
        req: &Request,
        code: u16,
        customize: impl FnOnce(&mut Response),
    ) {
        let tag = random_token(&mut self.rng, 10);
        let mut resp = Response::to(req, code, Some(&tag));
        resp.headers.push("Server", &self.config.user_agent);
        customize(&mut resp);
        self.send_on_tx(now, tx_id, resp.finish());
    }

    fn send_on_tx(&mut self, now: Instant, tx_id: u64, resp: Response) {
        let code = resp.code;
        let bytes = resp.to_bytes();
        if let Some(entry) = self.txs.get_mut(&tx_id) {
            if code >= 200 {
                entry.request = None;
            }
            match &mut entry.tx {
                AnyTx::InviteServer(tx) => tx.send_response(now, code, bytes),
                AnyTx::NonInviteServer(tx) => tx.send_response(now, code, bytes),
                _ => {}
            }
            self.drain_tx(tx_id);
        }
    }

    fn on_cancel(&mut self, now: Instant, reply_to: Peer, req: Request, key: TxKey) {
        let TxKey::Server {
            branch, sent_by, ..
        } = &key
        else {
            return;
        };
        let invite_key = TxKey::Server {
            branch: branch.clone(),
            sent_by: sent_by.clone(),
            method: "INVITE".into(),
        };
        let cancel_tx = self.new_server_tx(key, reply_to, &req);
        let target = self.tx_index.get(&invite_key).copied();
        let Some(invite_id) = target else {
            return self.reply(now, cancel_tx, &req, 481, |_| {});
        };
        let (call, pending) = match self.txs.get(&invite_id) {
            Some(e) => (
                e.call,
                matches!(&e.tx, AnyTx::InviteServer(t) if t.state() == InviteServerState::Proceeding),
            ),
            None => (None, false),
        };
        // The CANCEL's To tag is the INVITE's (none); answer it with the dialog's tag.
        let local_tag = call
            .and_then(|c| self.calls.get(&c))
            .map(|c| c.dialog.id.local_tag.clone());
        let mut ok = Response::to(&req, 200, local_tag.as_deref());
        ok.headers.push("Server", &self.config.user_agent);
        self.send_on_tx(now, cancel_tx, ok.finish());
        if !pending {
            return; // Already answered: the CANCEL has no effect (RFC 3261 §9.2).
        }
        let invite = self.txs.get(&invite_id).and_then(|e| e.request.clone());
        if let (Some(call), Some(invite)) = (call, invite) {
            let tag = local_tag.unwrap_or_else(|| random_token(&mut self.rng, 10));
            let mut resp = Response::to(&invite, 487, Some(&tag));
            resp.headers.push("Server", &self.config.user_agent);
            self.send_on_tx(now, invite_id, resp.finish());
            if let Some(state) = self.calls.get_mut(&call) {
                state.invite_tx = None;
                state.invite_final = true;
            }
            self.end_call(call, EndReason::Cancelled);
        }
    }

    fn on_new_invite(
        &mut self,
        now: Instant,
        tx_id: u64,
        peer: Peer,
        local: SocketAddr,
        req: Request,
        core: &Core,
    ) {
        // 100 Trying at once stops the caller's Timer A retransmissions (RFC 3261 §17.2.1).
        let mut trying = Response::to(&req, 100, None);
        trying.headers.push("Server", &self.config.user_agent);
        self.send_on_tx(now, tx_id, trying.finish());

        let local_tag = random_token(&mut self.rng, 10);
        let contact = local_contact(local, peer.transport);
        let dialog = match Dialog::as_uas(
            &req,
            core,
            &local_tag,
            &contact,
            self.rng.gen_range(1..=10_000),
        ) {
            Ok(d) => d,
            Err(e) => {
                return self.reply(now, tx_id, &req, 400, |r| {
                    r.headers.push("Warning", warning(&e.reason));
                })
            }
        };
        let call = CallRef(self.alloc_id());
        if let Some(entry) = self.txs.get_mut(&tx_id) {
            entry.call = Some(call);
        }
        self.dialogs.insert(dialog.id.clone(), call);
        self.calls.insert(
            call,
            CallState {
                role: Role::Uas,
                peer,
                local,
                dialog,
                invite_tx: Some(tx_id),
                invite: None,
                invite_final: false,
                answered: false,
                cancel_wanted: false,
                auth_tried: false,
                credentials: None,
                redirects: 0,
                reinvite_tx: None,
                pending_2xx: None,
                bye_sent: false,
                refer_sent: false,
                ack_bytes: None,
            },
        );
        self.event(Event::Incoming {
            call,
            request: req,
            peer,
            local,
        });
    }

    fn on_ack_in_dialog(&mut self, req: &Request, core: &Core) {
        let id = DialogId {
            call_id: core.call_id.clone(),
            local_tag: core.to.tag().unwrap_or_default().to_string(),
            remote_tag: core.from.tag().unwrap_or_default().to_string(),
        };
        let Some(&call) = self.dialogs.get(&id) else {
            return;
        };
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let matches = state
            .pending_2xx
            .as_ref()
            .is_some_and(|p| p.cseq == core.cseq.seq);
        if matches {
            state.pending_2xx = None;
            state.dialog.state = DialogState::Confirmed;
            let body = req.body.clone();
            self.event(Event::Confirmed { call, body });
        }
    }

    fn on_in_dialog_request(
        &mut self,
        now: Instant,
        tx_id: u64,
        req: Request,
        core: &Core,
        to_tag: String,
    ) {
        let id = DialogId {
            call_id: core.call_id.clone(),
            local_tag: to_tag,
            remote_tag: core.from.tag().unwrap_or_default().to_string(),
        };
        let Some(&call) = self.dialogs.get(&id) else {
            return self.reply(now, tx_id, &req, 481, |_| {});
        };
        let in_order = self
            .calls
            .get_mut(&call)
            .map(|s| s.dialog.accept_remote_cseq(&req.method, core.cseq.seq))
            .unwrap_or(false);
        if !in_order {
            return self.reply(now, tx_id, &req, 500, |r| {
                r.headers.push("Warning", warning("CSeq out of order"));
            });
        }
        if let Some(entry) = self.txs.get_mut(&tx_id) {
            entry.call = Some(call);
        }
        let local_tag = id.local_tag.clone();
        match req.method {
            Method::Bye => {
                let mut ok = Response::to(&req, 200, Some(&local_tag));
                ok.headers.push("Server", &self.config.user_agent);
                self.send_on_tx(now, tx_id, ok.finish());
                self.end_call(call, EndReason::RemoteBye);
            }
            Method::Invite => {
                let busy = self
                    .calls
                    .get(&call)
                    .is_some_and(|s| s.reinvite_tx.is_some() || s.pending_2xx.is_some());
                if busy {
                    // RFC 3261 §14.2: a re-INVITE while another is in progress.
                    return self.reply(now, tx_id, &req, 500, |r| {
                        r.headers.push("Retry-After", "1");
                    });
                }
                if let Some(state) = self.calls.get_mut(&call) {
                    state.reinvite_tx = Some(tx_id);
                    state.dialog.refresh_target(&req.headers);
                }
                let mut trying = Response::to(&req, 100, None);
                trying.headers.push("Server", &self.config.user_agent);
                self.send_on_tx(now, tx_id, trying.finish());
                self.event(Event::Reinvite { call, request: req });
            }
            Method::Options | Method::Info | Method::Update => {
                self.reply(now, tx_id, &req, 200, |r| {
                    r.headers.set("To", core.to.to_string());
                    r.headers.push("Allow", ALLOW);
                })
            }
            Method::Notify => self.on_notify(now, tx_id, call, &req, core),
            _ => self.reply(now, tx_id, &req, 405, |r| r.headers.push("Allow", ALLOW)),
        }
    }

    /// A NOTIFY in a dialog: only the `refer` event package is ours (RFC 3515), and only
    /// after we sent a REFER; its `message/sipfrag` body carries the transfer's progress.
    fn on_notify(&mut self, now: Instant, tx_id: u64, call: CallRef, req: &Request, core: &Core) {
        let event = req.headers.get("Event").unwrap_or_default();
        let package = event.split(';').next().unwrap_or_default().trim();
        let referred = self.calls.get(&call).is_some_and(|s| s.refer_sent);
        if !package.eq_ignore_ascii_case("refer") || !referred {
            // RFC 6665 §4.1.3: no subscription of that kind here.
            return self.reply(now, tx_id, req, 481, |_| {});
        }
        let Some(status) = sipfrag_status(&req.body) else {
            return self.reply(now, tx_id, req, 400, |r| {
                r.headers.push(
                    "Warning",
                    warning("NOTIFY body is not a message/sipfrag status line"),
                );
            });
        };
        let terminated = req
            .headers
            .get("Subscription-State")
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"));
        self.reply(now, tx_id, req, 200, |r| {
            r.headers.set("To", core.to.to_string());
        });
        self.event(Event::TransferProgress {
            call,
            status,
            terminated: terminated || status >= 200,
        });
    }

    /// Asks the peer to call `target` (RFC 3515 REFER, a blind transfer); the outcome comes
    /// as [`Event::ReferAnswered`] and [`Event::TransferProgress`].
    pub fn refer(&mut self, now: Instant, call: CallRef, target: &str) {
        let ua = self.config.user_agent.clone();
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        if state.bye_sent || state.dialog.state != DialogState::Confirmed {
            self.event(Event::ReferAnswered { call, code: 481 });
            return;
        }
        state.refer_sent = true;
        let mut refer = state.dialog.new_request(Method::Refer, &ua);
        refer.headers.push("Refer-To", format!("<{target}>"));
        refer
            .headers
            .push("Referred-By", format!("<{}>", state.dialog.local.uri));
        let peer = in_dialog_peer(&state.dialog, state.peer);
        let local = state.local;
        self.start_client_tx(now, call, &mut refer, peer, local, ClientPurpose::Refer);
    }

    fn on_response(&mut self, now: Instant, resp: Response) {
        let Ok(core) = resp.core() else { return };
        let key = TxKey::Client {
            branch: core.top_via().branch().unwrap_or_default().to_string(),
            method: core.cseq.method.clone(),
        };
        let Some(&id) = self.tx_index.get(&key) else {
            // A 2xx retransmission after our INVITE transaction ended: re-ACK it.
            if (200..300).contains(&resp.code) && core.cseq.method == "INVITE" {
                self.reack(&core);
            }
            return;
        };
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        let (call, purpose) = (entry.call, entry.purpose);
        let TxEntry { tx, request, .. } = entry;
        let disposition = match tx {
            AnyTx::InviteClient(tx) => tx.on_response(now, resp.code, || {
                request
                    .as_ref()
                    .map(|r| ack_for_failure(r, &resp).to_bytes())
                    .unwrap_or_default()
            }),
            AnyTx::NonInviteClient(tx) => tx.on_response(now, resp.code),
            _ => ResponseDisposition::Absorbed,
        };
        // Only the INVITE's own handling needs the request back (dialog, ACK, retries).
        let invite = match (disposition, purpose) {
            (ResponseDisposition::PassUp, Some(ClientPurpose::Invite)) => request.clone(),
            _ => None,
        };
        self.drain_tx(id);
        if disposition == ResponseDisposition::Absorbed {
            return;
        }
        let Some(call) = call else { return };
        match purpose {
            Some(ClientPurpose::Invite) => {
                if let Some(request) = invite {
                    self.on_invite_response(now, call, request, resp)
                }
            }
            Some(ClientPurpose::Bye) if resp.code >= 200 => {
                self.end_call(call, EndReason::LocalBye)
            }
            Some(ClientPurpose::Refer) if resp.code >= 200 => self.event(Event::ReferAnswered {
                call,
                code: resp.code,
            }),
            _ => {}
        }
    }

    fn reack(&mut self, core: &Core) {
        let id = DialogId {
            call_id: core.call_id.clone(),
            local_tag: core.from.tag().unwrap_or_default().to_string(),
            remote_tag: core.to.tag().unwrap_or_default().to_string(),
        };
        let Some(call) = self.dialogs.get(&id) else {
            return;
        };
        if let Some(state) = self.calls.get(call) {
            if let Some(ack) = state.ack_bytes.clone() {
                let peer = state.peer;
                self.transmit(peer, ack);
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Commands from the call layer (UAS)

    /// Answers the dialog-creating INVITE: 1xx, 2xx (with SDP) or a final failure.
    pub fn respond(
        &mut self,
        now: Instant,
        call: CallRef,
        code: u16,
        sdp: Option<Vec<u8>>,
        extra: &[(&str, String)],
    ) {
        let Some(state) = self.calls.get(&call) else {
            return;
        };
        let Some(tx_id) = state.invite_tx else { return };
        let Some(request) = self.txs.get(&tx_id).and_then(|e| e.request.clone()) else {
            return;
        };
        let resp = self.build_dialog_response(call, &request, code, sdp, extra);
        if code >= 200 {
            if let Some(state) = self.calls.get_mut(&call) {
                state.invite_tx = None;
                state.invite_final = true;
            }
        }
        if (200..300).contains(&code) {
            self.start_2xx(now, call, &resp, tx_id);
            if let Some(state) = self.calls.get_mut(&call) {
                state.answered = true;
            }
        } else {
            self.send_on_tx(now, tx_id, resp);
            if code >= 300 {
                self.end_call(call, EndReason::Rejected(code));
            }
        }
    }

    /// Answers a re-INVITE.
    pub fn respond_reinvite(
        &mut self,
        now: Instant,
        call: CallRef,
        code: u16,
        sdp: Option<Vec<u8>>,
    ) {
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(tx_id) = state.reinvite_tx.take() else {
            return;
        };
        let Some(request) = self.txs.get(&tx_id).and_then(|e| e.request.clone()) else {
            return;
        };
        let resp = self.build_dialog_response(call, &request, code, sdp, &[]);
        if (200..300).contains(&code) {
            self.start_2xx(now, call, &resp, tx_id);
        } else {
            self.send_on_tx(now, tx_id, resp);
        }
    }

    fn build_dialog_response(
        &self,
        call: CallRef,
        request: &Request,
        code: u16,
        sdp: Option<Vec<u8>>,
        extra: &[(&str, String)],
    ) -> Response {
        let state = &self.calls[&call];
        let mut resp = Response::to(request, code, Some(&state.dialog.id.local_tag));
        if (101..300).contains(&code) {
            resp.headers
                .push("Contact", format!("<{}>", state.dialog.local_contact));
            for rr in request.headers.all("Record-Route") {
                resp.headers.push("Record-Route", rr);
            }
        }
        if (200..300).contains(&code) {
            resp.headers.push("Allow", ALLOW);
            resp.headers.push("Supported", SUPPORTED.join(", "));
        }
        resp.headers.push("Server", &self.config.user_agent);
        for (name, value) in extra {
            resp.headers.push(name, value);
        }
        if let Some(sdp) = sdp {
            resp = resp.with_body("application/sdp", sdp);
        }
        resp.finish()
    }

    /// Sends a 2xx through its transaction and keeps retransmitting it until the ACK.
    fn start_2xx(&mut self, now: Instant, call: CallRef, resp: &Response, tx_id: u64) {
        let cseq = resp.core().map(|c| c.cseq.seq).unwrap_or_default();
        let bytes = resp.to_bytes();
        self.send_on_tx(now, tx_id, resp.clone());
        let t = self.config.timers;
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let reliable = state.peer.transport.reliable();
        let next_at = if reliable {
            now + t.timeout()
        } else {
            now + t.t1
        };
        state.pending_2xx = Some(Pending2xx {
            cseq,
            bytes,
            interval: t.t1,
            next_at,
            give_up_at: now + t.timeout(),
        });
        self.timers.push(Reverse((
            next_at.min(now + t.timeout()),
            TimerTarget::Call(call),
        )));
    }

    fn call_timer(&mut self, now: Instant, call: CallRef) {
        let t2 = self.config.timers.t2;
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(pending) = state.pending_2xx.as_mut() else {
            return;
        };
        if now >= pending.give_up_at {
            // RFC 3261 §13.3.1.4: no ACK within 64*T1 — confirm and immediately end the
            // session with BYE.
            state.pending_2xx = None;
            tracing::info!(%call, "2xx never acknowledged, sending BYE");
            self.send_bye(now, call);
            self.end_call(call, EndReason::AckTimeout);
            return;
        }
        if now >= pending.next_at {
            let peer = state.peer;
            let bytes = pending.bytes.clone();
            pending.interval = (pending.interval * 2).min(t2);
            pending.next_at = now + pending.interval;
            let next = pending.next_at.min(pending.give_up_at);
            if !peer.transport.reliable() {
                self.transmit(peer, bytes);
            }
            self.timers.push(Reverse((next, TimerTarget::Call(call))));
        } else {
            let next = pending.next_at.min(pending.give_up_at);
            self.timers.push(Reverse((next, TimerTarget::Call(call))));
        }
    }

    /// Ends a call from our side: BYE once answered, CANCEL while our INVITE is pending, or a
    /// final response while we have not answered an incoming INVITE.
    pub fn hangup(&mut self, now: Instant, call: CallRef) {
        let Some(state) = self.calls.get(&call) else {
            return;
        };
        match (
            state.role,
            state.answered || state.dialog.state == DialogState::Confirmed,
        ) {
            (Role::Uas, false) => self.respond(now, call, 480, None, &[]),
            (Role::Uac, false) => self.cancel(now, call),
            (_, true) => {
                self.send_bye(now, call);
            }
        }
    }

    fn send_bye(&mut self, now: Instant, call: CallRef) {
        let ua = self.config.user_agent.clone();
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        if state.bye_sent {
            return;
        }
        state.bye_sent = true;
        let mut bye = state.dialog.new_request(Method::Bye, &ua);
        let peer = in_dialog_peer(&state.dialog, state.peer);
        let local = state.local;
        self.start_client_tx(now, call, &mut bye, peer, local, ClientPurpose::Bye);
    }

    fn start_client_tx(
        &mut self,
        now: Instant,
        call: CallRef,
        req: &mut Request,
        peer: Peer,
        local: SocketAddr,
        purpose: ClientPurpose,
    ) -> u64 {
        let branch = new_branch(&mut self.rng);
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            peer.transport.via_token(),
            local
        );
        let mut headers = message::Headers::default();
        headers.push("Via", via);
        for (n, v) in req.headers.iter() {
            headers.push(n, v);
        }
        headers.set("Content-Length", req.body.len().to_string());
        req.headers = headers;
        let bytes = req.to_bytes();
        let reliable = peer.transport.reliable();
        let t = self.config.timers;
        let tx = if req.method == Method::Invite {
            AnyTx::InviteClient(InviteClient::new(now, t, reliable, bytes))
        } else {
            AnyTx::NonInviteClient(NonInviteClient::new(now, t, reliable, bytes))
        };
        self.insert_tx(TxEntry {
            key: TxKey::Client {
                branch,
                method: req.method.as_str().to_string(),
            },
            tx,
            peer,
            call: Some(call),
            purpose: Some(purpose),
            request: Some(req.clone()),
        })
    }

    // -----------------------------------------------------------------------------------
    // UAC

    /// Places an outbound call. `peer` is the resolved next hop for `invite.target`.
    pub fn invite(
        &mut self,
        now: Instant,
        invite: Invite,
        peer: Peer,
        local: SocketAddr,
    ) -> CallRef {
        let call = CallRef(self.alloc_id());
        let contact = local_contact(local, peer.transport);
        let local_tag = random_token(&mut self.rng, 10);
        let from = NameAddr {
            display: None,
            uri: format!("sip:{}@{}", invite.from_user, local),
            params: Default::default(),
        }
        .with_tag(&local_tag);
        let dialog = Dialog {
            id: DialogId {
                call_id: invite
                    .call_id
                    .clone()
                    .unwrap_or_else(|| format!("{}@parley", random_token(&mut self.rng, 20))),
                local_tag,
                remote_tag: String::new(),
            },
            state: DialogState::Early,
            local: from,
            remote: NameAddr {
                display: None,
                uri: invite.target.clone(),
                params: Default::default(),
            },
            local_seq: 1,
            remote_seq: None,
            remote_target: invite.target.clone(),
            route_set: Vec::new(),
            local_contact: contact,
        };
        let mut req = dialog.request_with_seq(Method::Invite, 1, &self.config.user_agent);
        req.headers.push("Allow", ALLOW);
        req.headers.push("Content-Type", "application/sdp");
        req.body = invite.sdp;
        self.calls.insert(
            call,
            CallState {
                role: Role::Uac,
                peer,
                local,
                dialog,
                invite_tx: None,
                invite: None,
                invite_final: false,
                answered: false,
                cancel_wanted: false,
                auth_tried: false,
                credentials: invite.credentials,
                redirects: 0,
                reinvite_tx: None,
                pending_2xx: None,
                bye_sent: false,
                refer_sent: false,
                ack_bytes: None,
            },
        );
        self.send_invite(now, call, req);
        call
    }

    fn send_invite(&mut self, now: Instant, call: CallRef, mut req: Request) {
        let Some(state) = self.calls.get(&call) else {
            return;
        };
        let (peer, local) = (state.peer, state.local);
        let tx = self.start_client_tx(now, call, &mut req, peer, local, ClientPurpose::Invite);
        if let Some(state) = self.calls.get_mut(&call) {
            state.invite_tx = Some(tx);
            state.invite = Some(req);
        }
    }

    fn cancel(&mut self, now: Instant, call: CallRef) {
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        state.cancel_wanted = true;
        let (Some(invite), Some(tx)) = (state.invite.clone(), state.invite_tx) else {
            return;
        };
        // RFC 3261 §9.1: CANCEL only after a provisional response; until then remember it.
        let proceeding = matches!(self.txs.get(&tx).map(|e| &e.tx),
            Some(AnyTx::InviteClient(t)) if t.state() == super::transaction::InviteClientState::Proceeding);
        if !proceeding {
            return;
        }
        let mut cancel = Request {
            method: Method::Cancel,
            uri: invite.uri.clone(),
            headers: message::Headers::default(),
            body: Vec::new(),
        };
        let via = invite.headers.get("Via").unwrap_or_default().to_string();
        let branch = Via::parse(&via)
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        cancel.headers.push("Via", &via);
        for name in ["Route", "From", "To", "Call-ID"] {
            for v in invite.headers.all(name) {
                cancel.headers.push(name, v);
            }
        }
        let seq = invite.core().map(|c| c.cseq.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        cancel.headers.push("Max-Forwards", "70");
        cancel.headers.push("Content-Length", "0");
        let bytes = cancel.to_bytes();
        let peer = state.peer;
        let reliable = peer.transport.reliable();
        let t = self.config.timers;
        self.insert_tx(TxEntry {
            key: TxKey::Client {
                branch,
                method: "CANCEL".into(),
            },
            tx: AnyTx::NonInviteClient(NonInviteClient::new(now, t, reliable, bytes)),
            peer,
            call: Some(call),
            purpose: Some(ClientPurpose::Cancel),
            request: Some(cancel),
        });
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        call: CallRef,
        request: Request,
        resp: Response,
    ) {
        let code = resp.code;
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        match code {
            100..=199 => {
                let cancel = state.cancel_wanted;
                self.event(Event::Progress { call, code });
                if cancel && code > 100 {
                    self.cancel(now, call);
                }
            }
            200..=299 => {
                let first = state.ack_bytes.is_none();
                if first {
                    let contact = state.dialog.local_contact.clone();
                    let Ok(mut dialog) = Dialog::as_uac(&request, &resp, &contact) else {
                        return;
                    };
                    dialog.local_seq = state.dialog.local_seq.max(dialog.local_seq);
                    let old_id = std::mem::replace(&mut state.dialog, dialog).id;
                    let seq = request.core().map(|c| c.cseq.seq).unwrap_or(1);
                    let mut ack =
                        state
                            .dialog
                            .request_with_seq(Method::Ack, seq, &self.config.user_agent);
                    let peer = in_dialog_peer(&state.dialog, state.peer);
                    ack.headers = with_via(&ack, peer, state.local, &new_branch(&mut self.rng));
                    let bytes = ack.to_bytes();
                    state.ack_bytes = Some(bytes.clone());
                    state.answered = true;
                    state.invite_final = true;
                    let cancel = state.cancel_wanted;
                    let new_id = state.dialog.id.clone();
                    self.dialogs.remove(&old_id);
                    self.dialogs.insert(new_id, call);
                    self.transmit(peer, bytes);
                    self.event(Event::Answered {
                        call,
                        response: resp,
                    });
                    if cancel {
                        self.send_bye(now, call);
                    }
                } else if let Some(ack) = state.ack_bytes.clone() {
                    let peer = in_dialog_peer(&state.dialog, state.peer);
                    self.transmit(peer, ack);
                }
            }
            401 | 407 if !state.auth_tried && state.credentials.is_some() => {
                state.auth_tried = true;
                let header = if code == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = auth::best_challenge(resp.headers.all(header));
                let creds = state.credentials.clone();
                match (challenge, creds) {
                    (Some(ch), Some(creds)) => {
                        let mut retry = request.clone();
                        retry.headers.remove("Via");
                        state.dialog.local_seq += 1;
                        let seq = state.dialog.local_seq;
                        retry.headers.set("CSeq", format!("{seq} INVITE"));
                        let value = auth::authorize(
                            &ch,
                            &creds,
                            "INVITE",
                            &retry.uri,
                            1,
                            &auth::new_cnonce(&mut self.rng),
                        );
                        match value {
                            Ok(v) => {
                                let name = if code == 401 {
                                    "Authorization"
                                } else {
                                    "Proxy-Authorization"
                                };
                                retry.headers.set(name, v);
                                self.send_invite(now, call, retry);
                            }
                            Err(e) => {
                                tracing::warn!(%call, error = %e, "cannot answer the challenge");
                                self.end_call(call, EndReason::Failed(code));
                            }
                        }
                    }
                    _ => self.end_call(call, EndReason::Failed(code)),
                }
            }
            300..=399 if state.redirects < 3 => {
                state.redirects += 1;
                let target = resp
                    .headers
                    .list("Contact")
                    .first()
                    .and_then(|c| NameAddr::parse(c, "Contact").ok())
                    .map(|n| n.uri);
                let peer = target
                    .as_deref()
                    .and_then(|t| SipUri::parse(t).ok())
                    .and_then(|u| uri_peer(&u, state.peer.transport));
                match (target, peer) {
                    (Some(target), Some(peer)) => {
                        let mut retry = request.clone();
                        retry.headers.remove("Via");
                        retry.uri = target.clone();
                        state.dialog.local_seq += 1;
                        let seq = state.dialog.local_seq;
                        retry.headers.set("CSeq", format!("{seq} INVITE"));
                        state.peer = peer;
                        tracing::info!(%call, %target, "following redirect");
                        self.send_invite(now, call, retry);
                    }
                    _ => self.end_call(call, EndReason::Failed(code)),
                }
            }
            _ => self.end_call(call, EndReason::Failed(code)),
        }
    }
}

impl TxEntry {
    fn tx_is_invite_server(&self) -> bool {
        matches!(self.tx, AnyTx::InviteServer(_))
    }
}

/// An INVITE whose body is not SDP gets 415; one whose Accept rules out SDP gets 406, since
/// we could not send an answer it understands.
/// The status code of a `message/sipfrag` body's first line, `SIP/2.0 200 OK`.
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

fn unacceptable_body(req: &Request) -> Option<(u16, &'static str)> {
    if !req.body.is_empty() {
        let content_type = req.headers.get("Content-Type").unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if !mime.eq_ignore_ascii_case("application/sdp") {
            return Some((415, "only application/sdp bodies are supported"));
        }
    }
    let accept = req.headers.list("Accept");
    if !accept.is_empty() {
        let takes_sdp = accept.iter().any(|a| {
            let mime = a.split(';').next().unwrap_or_default().trim();
            ["application/sdp", "application/*", "*/*"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(mime))
        });
        if !takes_sdp {
            return Some((406, "Accept excludes application/sdp"));
        }
    }
    None
}

fn with_via(req: &Request, peer: Peer, local: SocketAddr, branch: &str) -> message::Headers {
    let mut headers = message::Headers::default();
    headers.push(
        "Via",
        format!(
            "SIP/2.0/{} {};branch={};rport",
            peer.transport.via_token(),
            local,
            branch
        ),
    );
    for (n, v) in req.headers.iter() {
        headers.push(n, v);
    }
    headers.set("Content-Length", req.body.len().to_string());
    headers
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
fn ack_for_failure(invite: &Request, resp: &Response) -> Request {
    let mut headers = message::Headers::default();
    if let Some(via) = invite.headers.get("Via") {
        headers.push("Via", via);
    }
    for name in ["Route"] {
        for v in invite.headers.all(name) {
            headers.push(name, v);
        }
    }
    for (name, source) in [
        ("From", &invite.headers),
        ("To", &resp.headers),
        ("Call-ID", &invite.headers),
    ] {
        if let Some(v) = source.get(name) {
            headers.push(name, v);
        }
    }
    let seq = invite.core().map(|c| c.cseq.seq).unwrap_or(1);
    headers.push("CSeq", format!("{seq} ACK"));
    headers.push("Max-Forwards", "70");
    headers.push("Content-Length", "0");
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

pub fn local_contact(local: SocketAddr, transport: TransportKind) -> String {
    let host = HostPort {
        host: match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
        port: Some(local.port()),
    };
    match transport {
        TransportKind::Udp => format!("sip:parley@{host}"),
        TransportKind::Tcp => format!("sip:parley@{host};transport=tcp"),
    }
}

/// The socket address for a URI whose host is an IP literal.
pub fn uri_peer(uri: &SipUri, default_transport: TransportKind) -> Option<Peer> {
    let ip: std::net::IpAddr = uri.host_port.bare_host().parse().ok()?;
    let transport = match uri.transport().map(str::to_ascii_lowercase).as_deref() {
        Some("tcp") => TransportKind::Tcp,
        Some("udp") => TransportKind::Udp,
        _ => default_transport,
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, uri.port_or_default()),
        conn: None,
    })
}

/// Where in-dialog requests go: the next hop when it is an IP literal, else back to where the
/// dialog's INVITE came from (hostnames would need DNS, which the sans-I/O core does not do;
/// see docs/sip-compliance.md). A TCP connection to the same address is reused.
fn in_dialog_peer(dialog: &Dialog, origin: Peer) -> Peer {
    match dialog
        .next_hop()
        .and_then(|u| uri_peer(&u, origin.transport))
    {
        Some(p) if p.addr == origin.addr && p.transport == origin.transport => origin,
        Some(p) => p,
        None => origin,
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
