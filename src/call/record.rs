//! A call's detail record as the call session builds it: started when the session starts,
//! filled in as the call is routed and answered, finished when it ends or is refused, then
//! handed to the [`crate::store::cdr::CdrWriter`].

use parley_media::session::SessionStats;
use serde_json::Value;

use crate::call::core::HangupCause;
use crate::call::signalling::Ending;
use crate::metrics::turns::TurnTimes;
use crate::sip::endpoint::EndReason;
use crate::store::accounts::OPERATOR_ACCOUNT;
use crate::store::billing::Lease;
use crate::store::cdr::Cdr;
use crate::store::directory::Route;
use crate::store::{now_ms, random_id};

pub struct CallRecord {
    cdr: Cdr,
}

impl CallRecord {
    pub fn inbound(call_id: &str, from_uri: &str, to_uri: &str) -> CallRecord {
        let now = now_ms();
        CallRecord {
            cdr: Cdr {
                id: random_id("cdr_", 20),
                account_id: String::new(),
                agent_id: None,
                call_id: call_id.to_string(),
                direction: "inbound".into(),
                channel: "sip".into(),
                from_uri: from_uri.to_string(),
                to_uri: to_uri.to_string(),
                number: None,
                started_at: now,
                answered_at: None,
                ended_at: now,
                duration_ms: 0,
                billable_seconds: 0,
                cost: 0,
                hangup_cause: String::new(),
                hangup_side: "none".into(),
                final_code: 0,
                codec: None,
                packets_lost: 0,
                loss_percent: 0.0,
                jitter_ms: 0.0,
                mos: None,
                turns: Value::Array(vec![]),
                transcript: Value::Array(vec![]),
                recording: None,
                trunk: None,
                node: None,
            },
        }
    }

    /// A call from a browser (WebRTC) rather than over SIP.
    pub fn from_browser(mut self) -> CallRecord {
        self.cdr.channel = "webrtc".into();
        self
    }

    /// The call is held by the node named `node` (`redis.node_id`, else the host's name).
    pub fn on_node(mut self, node: &str) -> CallRecord {
        self.cdr.node = Some(node.to_string());
        self
    }

    /// A call Parley places through `trunk`.
    pub fn outbound(call_id: &str, from_uri: &str, to_uri: &str, trunk: &str) -> CallRecord {
        let mut record = CallRecord::inbound(call_id, from_uri, to_uri);
        record.cdr.direction = "outbound".into();
        record.cdr.trunk = Some(trunk.to_string());
        record
    }

    /// A placed call that was never answered (busy, no answer, cancelled, failed).
    pub fn not_answered(mut self, reason: Option<&EndReason>) -> Cdr {
        let (cause, code) = crate::call::originate::unanswered_cause(reason);
        self.cdr.ended_at = now_ms();
        self.cdr.final_code = code;
        self.cdr.hangup_cause = cause.into();
        self.cdr.hangup_side = match reason {
            Some(EndReason::Cancelled) | Some(EndReason::LocalBye) => "parley",
            _ => "callee",
        }
        .into();
        self.cdr
    }

    /// The call came in through the configured trunk `name`.
    pub fn via_trunk(&mut self, name: &str) {
        self.cdr.trunk = Some(name.to_string());
    }

    /// The record so far.
    pub fn cdr(&self) -> &Cdr {
        &self.cdr
    }

    pub fn routed(&mut self, route: &Route) {
        self.cdr.account_id = route.account_id.clone();
        self.cdr.agent_id = route.agent_id.clone();
        self.cdr.number = route.number.clone();
    }

    pub fn answered(&mut self, codec: Option<&str>, recording: Option<String>) {
        self.cdr.answered_at = Some(now_ms());
        self.cdr.final_code = 200;
        self.cdr.codec = codec.map(str::to_string);
        self.cdr.recording = recording;
    }

    /// What was said ([`crate::agent::conversation::Conversation::transcript`]).
    pub fn transcript(&mut self, lines: Value) {
        self.cdr.transcript = lines;
    }

    /// The call was refused with `code` before it was answered, for `cause`
    /// (`no_credit`, `unavailable`, …).
    pub fn refused(mut self, code: u16, cause: &str) -> Cdr {
        self.cdr.ended_at = now_ms();
        self.cdr.final_code = i64::from(code);
        self.cdr.hangup_cause = cause.into();
        self.cdr
    }

    /// The call was refused before it reached an account (`unknown_number`, `capacity`,
    /// `bad_sdp`, `no_ports`, `no_media`): its record goes to the operator's account.
    pub fn refused_unrouted(mut self, code: u16, cause: &str) -> Cdr {
        self.cdr.account_id = OPERATOR_ACCOUNT.into();
        self.refused(code, cause)
    }

    /// The call ended: how, its media quality, its turns and what it was billed.
    pub fn ended(
        mut self,
        ending: Ending,
        ours: Option<HangupCause>,
        stats: Option<&SessionStats>,
        turns: &[TurnTimes],
        lease: Option<&Lease>,
    ) -> Cdr {
        let c = &mut self.cdr;
        c.ended_at = now_ms();
        c.duration_ms = c.answered_at.map_or(0, |a| (c.ended_at - a).max(0));
        // A call Parley ended is recorded with why (credit, max_duration, api, drain, …),
        // not merely that it hung up.
        c.hangup_cause = match (ending.local, ours) {
            (true, Some(ours)) => ours.as_str().into(),
            _ => ending.cause.into(),
        };
        c.hangup_side = ending.side.into();
        if let Some(q) = stats.and_then(|s| s.quality.as_ref()) {
            c.packets_lost = q.packets_lost as i64;
            c.loss_percent = q.loss_percent;
            c.jitter_ms = q.jitter_ms;
            c.mos = (q.packets_received > 0).then_some(q.mos);
        }
        c.turns = Value::Array(turns.iter().map(TurnTimes::stages_ms).collect());
        if let Some(lease) = lease {
            c.billable_seconds = lease.used_seconds;
            c.cost = lease.cost;
        }
        self.cdr
    }
}
