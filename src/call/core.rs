//! The call core: an answered call's policy as a sans-I/O state machine that knows no SIP,
//! no WebRTC, no store and no clock.
//!
//! It decides when a call we placed stops ringing, *when* a call renews its billing lease, when the out-of-credit notice plays and
//! when the call then ends, whether it goes on as debt, when it has run too long, and how a
//! transfer's outcome reaches the agent; and it ends a call at most once, with a cause. The
//! driver (the per-call task in `manager.rs`) feeds it what happened ([`Input`]) with the time
//! it happened, wakes it at [`CallCore::next_timeout`], and carries out what it asks
//! ([`Action`]): the signalling adapter sends the BYE or the REFER, the lease does the store
//! I/O and reports the new grant back, the agent gets its answers. Tests drive it in simulated
//! time (`core_tests.rs`), as `sip::endpoint` and `agent::conversation` are.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Why the call core ends a call (the remote side's own BYE is the signalling's to report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    /// The agent said goodbye (`end_call`), or the menu finished.
    Agent,
    /// `POST /v1/calls/{id}/hangup` (on this node or another).
    Api,
    /// The node is draining and the drain's time is up.
    Drain,
    /// No media from the other side for `media.rtp_timeout_s`.
    MediaTimeout,
    /// The grant ran out with no more credit (after the notice, when there is one).
    Credit,
    /// The store closed the lease (it expired while the store was unreachable).
    LeaseClosed,
    /// `call.max_duration_s`, or the agent's own limit.
    MaxDuration,
    /// The caller was transferred (RFC 5589 §6: the transferor then ends its call).
    Transferred,
    /// A call we placed rang out unanswered.
    NoAnswer,
}

impl HangupCause {
    /// The cause as call records name it (`hangup_cause`).
    pub fn as_str(self) -> &'static str {
        match self {
            HangupCause::Agent => "agent",
            HangupCause::Api => "api",
            HangupCause::Drain => "drain",
            HangupCause::MediaTimeout => "media_timeout",
            HangupCause::Credit => "credit",
            HangupCause::LeaseClosed => "lease_closed",
            HangupCause::MaxDuration => "max_duration",
            HangupCause::Transferred => "transferred",
            HangupCause::NoAnswer => "no_answer",
        }
    }
}

/// What the call core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the call (BYE, or the WebRTC equivalent).
    Hangup(HangupCause),
    /// Ask the other side to call `target` (a blind transfer).
    Refer { target: String },
    /// Answer the agent's transfer tool call `id`.
    TellAgent { id: String, text: String },
    /// Report the usage so far and ask for more; answer with [`Input::Granted`] or
    /// [`Input::LeaseClosed`].
    RenewLease,
    /// The last grant came with final units: publish `lease.final_units` (once).
    FinalUnits,
    /// Credit is about to run out: stop the agent and play the out-of-credit notice.
    PlayNotice,
    /// The grant ran out under `final_unit_action = "allow"`: the call goes on as debt.
    InDebt,
    /// Tell the account's listeners (events, webhooks) what happened.
    Publish(CallEvent),
}

/// What the core tells the account's listeners about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// `call.answered`: the call was answered (once).
    Answered,
    /// `turn.completed`: the call's `turn`th turn (from 1) ended with the agent's reply.
    TurnCompleted { turn: usize },
}

/// What happened to the call, for the core to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The lease's grant after a reservation or renewal: seconds granted in all since the
    /// answer, and whether no more will come.
    Granted { seconds: i64, final_units: bool },
    /// The lease could not be renewed and the store says it is closed.
    LeaseClosed,
    /// A hang-up asked from outside the call: [`HangupCause::Api`] or [`HangupCause::Drain`].
    HangupRequested(HangupCause),
    /// The agent ended the call.
    AgentHangup,
    /// No media from the other side for too long.
    MediaTimeout,
    /// The agent asks to transfer the caller to `target`, answering tool call `id`.
    TransferRequested { id: String, target: String },
    /// The other side's final answer to our REFER.
    ReferAnswered { code: u16 },
    /// A NOTIFY about the transfer's new call: its status code, and whether the
    /// subscription ended.
    TransferProgress { status: u16, terminated: bool },
    /// The agent finished a turn (its reply went out).
    TurnCompleted,
}

/// The call's settings the core needs, fixed when it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// How often the lease is renewed (`billing.heartbeat_s`).
    pub heartbeat: Duration,
    /// `billing.final_unit_action = "terminate"` (false: "allow", the call goes on as debt).
    pub terminate: bool,
    /// How long the out-of-credit notice plays; None when there is none to play.
    pub notice: Option<Duration>,
    /// The longest the call may last.
    pub max_duration: Option<Duration>,
}

/// The out-of-credit notice starts this long before the grant runs out, and the hang-up
/// follows it by as much (the last packets are on their way).
pub const NOTICE_MARGIN: Duration = Duration::from_millis(300);

/// How long a transfer may take to report an outcome before the agent is told it failed.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(45);

/// A call's policy, from dialling (calls we place) or its answer to its end. See the module
/// doc.
#[derive(Debug)]
pub struct CallCore {
    /// Until the answer: when a call we placed stops ringing and is given up.
    ringing_until: Option<Instant>,
    config: CoreConfig,
    answered: Instant,
    granted_s: i64,
    final_units: bool,
    told_final_units: bool,
    next_renewal: Instant,
    /// A transfer in progress: the tool call it answers, and when to give up on it.
    transfer: Option<(String, Instant)>,
    /// When the out-of-credit notice, once started, has played out.
    notice_ends: Option<Instant>,
    in_debt: bool,
    hung_up: Option<HangupCause>,
    /// Turns completed, for `turn.completed`.
    turns: usize,
    actions: VecDeque<Action>,
}

impl CallCore {
    /// A call we placed at `now`, given up (CANCEL) when it rings past `ring_timeout`; see
    /// [`CallCore::answer`]. Before the answer only a hang-up request and the ring timeout
    /// count.
    pub fn dialling(now: Instant, ring_timeout: Duration) -> Self {
        let before_answer = CoreConfig {
            heartbeat: ring_timeout,
            terminate: true,
            notice: None,
            max_duration: None,
        };
        let mut core = CallCore::answered(now, before_answer, 0, false);
        core.ringing_until = Some(now + ring_timeout);
        // Not answered yet: `answer` says so when it is.
        core.actions.clear();
        core
    }

    /// The call we placed was answered at `now`, with these settings and its lease's grant.
    /// One the core already gave up on (the answer crossed its CANCEL) is ended again, now
    /// as an answered call.
    pub fn answer(&mut self, now: Instant, config: CoreConfig, granted_s: i64, final_units: bool) {
        let mut earlier = std::mem::take(&mut self.actions);
        let gave_up = self.hung_up;
        *self = CallCore::answered(now, config, granted_s, final_units);
        earlier.append(&mut self.actions);
        self.actions = earlier;
        if let Some(cause) = gave_up {
            self.hang_up(cause);
        }
    }

    /// A call answered at `now` with its lease's first grant.
    pub fn answered(now: Instant, config: CoreConfig, granted_s: i64, final_units: bool) -> Self {
        let mut core = CallCore {
            ringing_until: None,
            next_renewal: now + config.heartbeat,
            config,
            answered: now,
            granted_s,
            final_units,
            told_final_units: false,
            transfer: None,
            notice_ends: None,
            in_debt: false,
            hung_up: None,
            turns: 0,
            actions: VecDeque::from([Action::Publish(CallEvent::Answered)]),
        };
        core.note_final_units();
        core
    }

    /// Why the core ended the call, once it has.
    pub fn hung_up(&self) -> Option<HangupCause> {
        self.hung_up
    }

    /// Whether the call went past its grant as debt.
    pub fn in_debt(&self) -> bool {
        self.in_debt
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.ringing_until.is_some() {
            if let Input::HangupRequested(cause) = input {
                self.hang_up(cause);
            }
            return;
        }
        match input {
            Input::Granted {
                seconds,
                final_units,
            } => {
                self.granted_s = seconds;
                self.final_units = final_units;
                self.note_final_units();
            }
            Input::LeaseClosed => self.hang_up(HangupCause::LeaseClosed),
            Input::HangupRequested(cause) => self.hang_up(cause),
            Input::AgentHangup => self.hang_up(HangupCause::Agent),
            Input::MediaTimeout => self.hang_up(HangupCause::MediaTimeout),
            Input::TurnCompleted => {
                self.turns += 1;
                self.actions
                    .push_back(Action::Publish(CallEvent::TurnCompleted {
                        turn: self.turns,
                    }));
            }
            Input::TransferRequested { id, target } => {
                if self.transfer.is_some() {
                    self.tell(id, "A transfer is already in progress.".into());
                } else if self.hung_up.is_some() {
                    self.tell(id, "The call is ending; it cannot be transferred.".into());
                } else {
                    self.transfer = Some((id, now + TRANSFER_WAIT));
                    self.actions.push_back(Action::Refer { target });
                }
            }
            Input::ReferAnswered { code } => {
                // A 2xx only says the other side will try; the NOTIFYs tell how it went.
                if !(200..300).contains(&code) {
                    if let Some((id, _)) = self.transfer.take() {
                        self.tell(
                            id,
                            format!(
                                "The transfer was refused (SIP {code}). Tell the caller and \
                                 offer to help or take a message."
                            ),
                        );
                    }
                }
            }
            Input::TransferProgress { status, terminated } => {
                if (200..300).contains(&status) {
                    if let Some((id, _)) = self.transfer.take() {
                        self.tell(id, "The caller was transferred; this call ends now.".into());
                    }
                    self.hang_up(HangupCause::Transferred);
                } else if status >= 300 || terminated {
                    if let Some((id, _)) = self.transfer.take() {
                        self.tell(
                            id,
                            format!(
                                "The transfer failed: the colleague's line answered {status}. \
                                 Tell the caller and offer to help or take a message."
                            ),
                        );
                    }
                }
            }
        }
    }

    /// When the core next needs [`CallCore::handle_timeout`], if ever.
    pub fn next_timeout(&self) -> Option<Instant> {
        let ended = self.hung_up.is_some();
        if self.ringing_until.is_some() {
            return self.ringing_until.filter(|_| !ended);
        }
        [
            (!ended).then_some(self.next_renewal),
            self.transfer.as_ref().map(|t| t.1),
            self.notice_starts().filter(|_| !ended),
            self.notice_ends.filter(|_| !ended),
            self.runs_out_at()
                .filter(|_| !ended && self.notice_ends.is_none() && !self.in_debt),
            self.max_at().filter(|_| !ended),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(until) = self.ringing_until {
            if now >= until {
                self.hang_up(HangupCause::NoAnswer);
            }
            return;
        }
        if self.hung_up.is_none() && now >= self.next_renewal {
            self.next_renewal = now + self.config.heartbeat;
            self.actions.push_back(Action::RenewLease);
        }
        if self.transfer.as_ref().is_some_and(|t| now >= t.1) {
            if let Some((id, _)) = self.transfer.take() {
                self.tell(
                    id,
                    "The transfer did not complete in time. Tell the caller and offer to help \
                     or take a message."
                        .into(),
                );
            }
        }
        if self.hung_up.is_some() {
            return;
        }
        if self.notice_starts().is_some_and(|t| now >= t) {
            self.notice_ends = Some(now + self.config.notice.unwrap_or_default() + NOTICE_MARGIN);
            self.actions.push_back(Action::PlayNotice);
        }
        if self.notice_ends.is_some_and(|t| now >= t) {
            self.hang_up(HangupCause::Credit);
        }
        if self.notice_ends.is_none()
            && !self.in_debt
            && self.runs_out_at().is_some_and(|t| now >= t)
        {
            if self.config.terminate {
                self.hang_up(HangupCause::Credit);
            } else {
                self.in_debt = true;
                self.actions.push_back(Action::InDebt);
            }
        }
        if self.max_at().is_some_and(|t| now >= t) {
            self.hang_up(HangupCause::MaxDuration);
        }
    }

    /// When the call has used everything granted so far.
    pub fn runs_out_at(&self) -> Option<Instant> {
        Some(self.answered + Duration::from_secs(self.granted_s.max(0) as u64))
    }

    fn max_at(&self) -> Option<Instant> {
        self.config.max_duration.map(|d| self.answered + d)
    }

    /// With final units and a notice to play (and the call to end on it), the notice starts
    /// so that it ends as the grant does.
    fn notice_starts(&self) -> Option<Instant> {
        let notice = self.config.notice.filter(|_| self.config.terminate)?;
        if !self.final_units || self.notice_ends.is_some() {
            return None;
        }
        let out = self.runs_out_at()?;
        Some(out.checked_sub(notice + NOTICE_MARGIN).unwrap_or(out))
    }

    fn note_final_units(&mut self) {
        if self.final_units && !self.told_final_units {
            self.told_final_units = true;
            self.actions.push_back(Action::FinalUnits);
        }
    }

    fn tell(&mut self, id: String, text: String) {
        self.actions.push_back(Action::TellAgent { id, text });
    }

    /// Ends the call once; later causes are ignored.
    fn hang_up(&mut self, cause: HangupCause) {
        if self.hung_up.is_none() {
            self.hung_up = Some(cause);
            self.actions.push_back(Action::Hangup(cause));
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
