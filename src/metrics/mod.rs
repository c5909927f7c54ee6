//! Process-wide counters rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: every writer is a relaxed increment, and the reader tolerates the tiny skew
//! between counters that relaxed ordering allows.

mod histogram;
pub mod turns;

pub use histogram::{Histogram, BUCKETS_S};

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parley_media::engine::EngineStats;

use crate::sip::runtime::SipStats;

#[derive(Debug, Default)]
pub struct Metrics {
    pub active_calls: AtomicI64,
    pub calls_total: AtomicU64,
    pub calls_answered: AtomicU64,
    pub calls_rejected_capacity: AtomicU64,
    pub calls_rejected_media: AtomicU64,
    /// Calls refused with 404: the number called is not configured.
    pub calls_rejected_number: AtomicU64,
    /// Calls refused with 486 because their account was at its concurrent-call limit.
    pub calls_rejected_limit: AtomicU64,
    /// Calls refused because the account could not cover a first grant.
    pub calls_rejected_credit: AtomicU64,
    /// Calls ended because their account's credit ran out.
    pub calls_ended_credit: AtomicU64,
    /// Calls that went on beyond their credit as debt (`billing.final_unit_action = allow`).
    pub calls_in_debt: AtomicU64,
    /// Billing lease outcomes of this node's calls (and its sweeper).
    pub leases_reserved: AtomicU64,
    pub leases_renewed: AtomicU64,
    pub leases_final_units: AtomicU64,
    pub leases_released: AtomicU64,
    pub lease_errors: AtomicU64,
    pub leases_expired: AtomicU64,
    /// Webhook tries: answered 2xx, or not (retried later or given up).
    pub webhook_delivered: AtomicU64,
    pub webhook_failed_attempts: AtomicU64,
    /// Redis operations (`redis.url`) that failed or timed out; Parley fell back to its own.
    pub redis_errors: AtomicU64,
    pub calls_rtp_timeout: AtomicU64,
    pub rtp_ports_in_use: AtomicI64,
    /// Media events lost because a call's event channel was full.
    pub media_events_dropped: Arc<AtomicU64>,
    /// Time to first byte of each provider kind.
    pub stt_ttfb: Arc<Histogram>,
    pub llm_ttfb: Arc<Histogram>,
    pub tts_ttfb: Arc<Histogram>,
    /// Caller speech start (the media thread's VAD event) to the playout clear of a
    /// barge-in.
    pub barge_in: Arc<Histogram>,
    /// Per-turn latency by stage.
    pub turns: turns::TurnMetrics,
    /// Agent sessions that ended on a provider failure (fallback spoken).
    pub agent_provider_failures: AtomicU64,
    /// Caller audio dropped on its way to STT (a full queue).
    pub stt_audio_dropped: AtomicU64,
}

/// `parley_media_tick_delay_seconds`: how late media ticks started (a blocking call on the
/// media path, or a starved worker, shows here first).
fn render_tick_delay(out: &mut String, e: &EngineStats) {
    use parley_media::engine::TICK_DELAY_BOUNDS_US;
    let name = "parley_media_tick_delay_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How late media ticks started against their 20 ms schedule.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (i, bound) in TICK_DELAY_BOUNDS_US.iter().enumerate() {
        cumulative += e.tick_delay[i].load(Ordering::Relaxed);
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += e.tick_delay[TICK_DELAY_BOUNDS_US.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let sum = e.tick_delay_us_total.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, sip: Option<&Arc<SipStats>>, engine: Option<&Arc<EngineStats>>) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        metric(
            "parley_active_calls",
            "gauge",
            "Calls admitted and not yet ended.",
            self.active_calls.load(Ordering::Relaxed),
        );
        metric(
            "parley_calls_total",
            "counter",
            "Incoming INVITEs that created a call attempt.",
            get(&self.calls_total),
        );
        metric(
            "parley_calls_answered_total",
            "counter",
            "Calls answered with 200 OK.",
            get(&self.calls_answered),
        );
        metric(
            "parley_calls_rejected_capacity_total",
            "counter",
            "Calls refused with 503 because max_calls was reached.",
            get(&self.calls_rejected_capacity),
        );
        metric(
            "parley_calls_rejected_media_total",
            "counter",
            "Calls refused for SDP (488) or RTP port exhaustion (503).",
            get(&self.calls_rejected_media),
        );
        metric(
            "parley_calls_rejected_number_total",
            "counter",
            "Calls refused with 404 because the number called is not configured.",
            get(&self.calls_rejected_number),
        );
        metric(
            "parley_calls_rejected_credit_total",
            "counter",
            "Calls refused with 402 because the account could not cover a first grant.",
            get(&self.calls_rejected_credit),
        );
        metric(
            "parley_calls_rejected_limit_total",
            "counter",
            "Calls refused with 486 because the account was at its max_concurrent_calls.",
            get(&self.calls_rejected_limit),
        );
        for (name, help, value) in [
            (
                "parley_leases_reserved_total",
                "Billing leases reserved for calls.",
                &self.leases_reserved,
            ),
            (
                "parley_leases_renewed_total",
                "Heartbeat renewals of calls' leases.",
                &self.leases_renewed,
            ),
            (
                "parley_leases_final_units_total",
                "Calls whose grant was cut (final units).",
                &self.leases_final_units,
            ),
            (
                "parley_leases_released_total",
                "Calls' leases settled at hang-up.",
                &self.leases_released,
            ),
            (
                "parley_lease_errors_total",
                "Lease operations of calls that failed (store unreachable, lease closed).",
                &self.lease_errors,
            ),
            (
                "parley_leases_expired_total",
                "Unrenewed leases settled by this node's sweeper.",
                &self.leases_expired,
            ),
            (
                "parley_webhook_deliveries_total",
                "Webhook deliveries answered with a 2xx by this node.",
                &self.webhook_delivered,
            ),
            (
                "parley_webhook_failed_attempts_total",
                "Webhook tries that failed (no answer or not 2xx); retried with backoff.",
                &self.webhook_failed_attempts,
            ),
            (
                "parley_redis_errors_total",
                "Redis operations that failed or timed out (this node fell back to its own state).",
                &self.redis_errors,
            ),
        ] {
            metric(name, "counter", help, get(value));
        }
        metric(
            "parley_calls_ended_credit_total",
            "counter",
            "Calls ended because the account's credit ran out (final units used).",
            get(&self.calls_ended_credit),
        );
        metric(
            "parley_calls_in_debt_total",
            "counter",
            "Calls that went on beyond their credit, their excess recorded as debt.",
            get(&self.calls_in_debt),
        );
        metric(
            "parley_calls_rtp_timeout_total",
            "counter",
            "Calls ended because no RTP arrived for media.rtp_timeout_s.",
            get(&self.calls_rtp_timeout),
        );
        metric(
            "parley_rtp_ports_in_use",
            "gauge",
            "RTP/RTCP port pairs allocated to calls.",
            self.rtp_ports_in_use.load(Ordering::Relaxed),
        );
        metric(
            "parley_media_events_dropped_total",
            "counter",
            "Media events lost because a call's event channel was full.",
            self.media_events_dropped.load(Ordering::Relaxed) as i64,
        );
        if let Some(e) = engine {
            metric(
                "parley_rtp_packets_received_total",
                "counter",
                "Datagrams received on RTP ports.",
                get(&e.packets_in),
            );
            metric(
                "parley_rtp_packets_sent_total",
                "counter",
                "RTP packets sent.",
                get(&e.packets_out),
            );
            metric(
                "parley_webrtc_datagrams_total",
                "counter",
                "Datagrams read on the WebRTC port (every browser call's).",
                get(&e.webrtc_datagrams),
            );
            metric(
                "parley_webrtc_datagrams_unmatched_total",
                "counter",
                "Datagrams on the WebRTC port that belonged to no browser call (junk, scans, stale peers).",
                get(&e.webrtc_unmatched),
            );
            metric(
                "parley_media_ticks_total",
                "counter",
                "20 ms media ticks run, summed over workers.",
                get(&e.ticks),
            );
            metric(
                "parley_media_late_ticks_total",
                "counter",
                "Media ticks that started more than a tick late (overloaded worker).",
                get(&e.late_ticks),
            );
            metric(
                "parley_media_busy_microseconds_total",
                "counter",
                "Time media workers spent working rather than sleeping.",
                get(&e.busy_ns) / 1000,
            );
            metric(
                "parley_vad_windows_total",
                "counter",
                "32 ms VAD windows inferred (batched per media tick).",
                get(&e.vad_windows),
            );
            metric(
                "parley_vad_errors_total",
                "counter",
                "Batched VAD runs that failed.",
                get(&e.vad_errors),
            );
            metric(
                "parley_media_early_talkspurts_total",
                "counter",
                "Talkspurts started between ticks, the moment their audio was queued (held streams).",
                get(&e.early_talkspurts),
            );
            metric(
                "parley_media_priority_refused_total",
                "counter",
                "Media workers that could not take media.worker_nice (no permission).",
                get(&e.priority_refused),
            );
            metric(
                "parley_media_command_drops_total",
                "counter",
                "Media commands dropped because a worker's queue was full.",
                get(&e.command_drops),
            );
        }
        metric(
            "parley_agent_provider_failures_total",
            "counter",
            "Conversations ended with the fallback sentence because a provider failed.",
            get(&self.agent_provider_failures),
        );
        metric(
            "parley_stt_audio_dropped_total",
            "counter",
            "Caller audio chunks dropped because the STT queue was full.",
            get(&self.stt_audio_dropped),
        );
        if let Some(sip) = sip {
            metric(
                "parley_sip_messages_received_total",
                "counter",
                "SIP messages received (UDP datagrams and framed TCP messages).",
                get(&sip.messages_in),
            );
            metric(
                "parley_sip_messages_sent_total",
                "counter",
                "SIP messages sent.",
                get(&sip.messages_out),
            );
            metric(
                "parley_sip_tcp_connections_total",
                "counter",
                "TCP connections accepted.",
                get(&sip.tcp_connections),
            );
            metric(
                "parley_sip_tcp_framing_errors_total",
                "counter",
                "TCP connections closed because their stream could not be framed.",
                get(&sip.tcp_framing_errors),
            );
            metric(
                "parley_sip_send_errors_total",
                "counter",
                "SIP messages that could not be sent.",
                get(&sip.send_errors),
            );
        }
        if let Some(e) = engine {
            render_tick_delay(&mut out, e);
        }
        for (kind, h) in [
            ("stt", &self.stt_ttfb),
            ("llm", &self.llm_ttfb),
            ("tts", &self.tts_ttfb),
        ] {
            let name = format!("parley_{kind}_ttfb_seconds");
            let _ = writeln!(
                out,
                "# HELP {name} Time from a {kind} request to its first response byte.\n# TYPE {name} histogram"
            );
            h.render(&mut out, &name, "");
        }
        let _ = writeln!(
            out,
            "# HELP parley_barge_in_seconds Caller speech start (VAD event) to the agent clearing its playout; the media thread applies the clear at its next 20 ms tick.\n# TYPE parley_barge_in_seconds histogram"
        );
        self.barge_in
            .render(&mut out, "parley_barge_in_seconds", "");
        self.turns.render(&mut out);
        out
    }
}
