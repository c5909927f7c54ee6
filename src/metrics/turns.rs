//! Per-turn latency attribution: when each stage of a turn happened, so voice-to-voice
//! latency can be split into what the caller's silence, STT, the LLM, TTS and the engine
//! each cost. The conversation (`agent::`) sets the marks; the histograms here count them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Histogram;

/// The marks of one turn, each set when it happened (absent when the stage did not occur:
/// a DTMF turn has no speech end, a canned reply no LLM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnTimes {
    /// The caller stopped speaking (VAD, backdated to the end of the speech).
    pub speech_end: Option<Instant>,
    /// The last final transcript of the turn arrived.
    pub stt_final: Option<Instant>,
    /// The conversation decided the turn was over.
    pub turn_end: Option<Instant>,
    pub llm_request: Option<Instant>,
    pub llm_first_token: Option<Instant>,
    /// The first sentence went to TTS.
    pub tts_request: Option<Instant>,
    /// The first TTS audio was queued for playout.
    pub tts_first_audio: Option<Instant>,
    /// The first packet of the reply went out.
    pub first_audio_out: Option<Instant>,
}

/// The stages reported per turn, in the order they happen: (metric label, start, end).
type Stage = (
    &'static str,
    fn(&TurnTimes) -> Option<Instant>,
    fn(&TurnTimes) -> Option<Instant>,
);

const STAGES: [Stage; 7] = [
    ("endpointing", |t| t.speech_end, |t| t.turn_end),
    ("stt_final", |t| t.speech_end, |t| t.stt_final),
    ("llm_first_token", |t| t.llm_request, |t| t.llm_first_token),
    ("first_sentence", |t| t.llm_first_token, |t| t.tts_request),
    ("tts_first_audio", |t| t.tts_request, |t| t.tts_first_audio),
    (
        "playout_start",
        |t| t.tts_first_audio,
        |t| t.first_audio_out,
    ),
    ("voice_to_voice", |t| t.speech_end, |t| t.first_audio_out),
];

impl TurnTimes {
    /// A turn decided at `now`.
    pub fn starting(now: Instant) -> TurnTimes {
        TurnTimes {
            turn_end: Some(now),
            ..TurnTimes::default()
        }
    }

    /// Each stage's duration, where both its ends were marked.
    pub fn stages(&self) -> Vec<(&'static str, Duration)> {
        STAGES
            .iter()
            .filter_map(|(name, a, b)| match (a(self), b(self)) {
                (Some(a), Some(b)) => Some((*name, b.saturating_duration_since(a))),
                _ => None,
            })
            .collect()
    }

    /// The stages as a JSON object of milliseconds (`{"stt_final_ms": 164, …}`), for the
    /// call's record and its events.
    pub fn stages_ms(&self) -> serde_json::Value {
        let stages: serde_json::Map<String, serde_json::Value> = self
            .stages()
            .into_iter()
            .map(|(name, d)| {
                (
                    format!("{name}_ms"),
                    serde_json::json!(d.as_millis() as u64),
                )
            })
            .collect();
        serde_json::Value::Object(stages)
    }

    /// Voice-to-voice: the caller stopped speaking → the reply's first packet went out.
    pub fn voice_to_voice(&self) -> Option<Duration> {
        Some(
            self.first_audio_out?
                .saturating_duration_since(self.speech_end?),
        )
    }

    /// What the engine itself added between the end-of-turn decision and the first packet:
    /// the wait before the LLM request went out, plus the time from the first TTS audio
    /// being handed to the playout to its first packet on the wire. Everything between the
    /// request and the first audio is the providers' (the LLM streaming its first sentence,
    /// TTS synthesizing it).
    pub fn engine_added(&self) -> Option<Duration> {
        let before_llm = self.llm_request?.saturating_duration_since(self.turn_end?);
        let to_wire = self
            .first_audio_out?
            .saturating_duration_since(self.tts_first_audio?);
        Some(before_llm + to_wire)
    }
}

/// One histogram per stage, rendered as `parley_turn_stage_seconds{stage="…"}`.
#[derive(Debug, Default)]
pub struct TurnMetrics {
    stages: [Arc<Histogram>; STAGES.len()],
    engine_added: Arc<Histogram>,
    pub turns: std::sync::atomic::AtomicU64,
}

impl TurnMetrics {
    pub fn observe(&self, times: &TurnTimes) {
        self.turns
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, (_, a, b)) in STAGES.iter().enumerate() {
            if let (Some(a), Some(b)) = (a(times), b(times)) {
                self.stages[i].observe(b.saturating_duration_since(a));
            }
        }
        if let Some(d) = times.engine_added() {
            self.engine_added.observe(d);
        }
    }

    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP parley_turn_stage_seconds Per-turn latency by stage (voice_to_voice: caller \
             speech end to the reply's first packet).\n# TYPE parley_turn_stage_seconds histogram"
        );
        for (i, (name, _, _)) in STAGES.iter().enumerate() {
            self.stages[i].render(
                out,
                "parley_turn_stage_seconds",
                &format!("stage=\"{name}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP parley_turn_engine_added_seconds End-of-turn decision to first reply packet, \
             minus the LLM's and TTS's own time to first output.\n# TYPE \
             parley_turn_engine_added_seconds histogram"
        );
        self.engine_added
            .render(out, "parley_turn_engine_added_seconds", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_engine_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let t = TurnTimes {
            speech_end: Some(ms(0)),
            stt_final: Some(ms(250)),
            turn_end: Some(ms(300)),
            llm_request: Some(ms(301)),
            llm_first_token: Some(ms(501)),
            tts_request: Some(ms(560)),
            tts_first_audio: Some(ms(660)),
            first_audio_out: Some(ms(675)),
        };
        assert_eq!(t.voice_to_voice(), Some(Duration::from_millis(675)));
        // 1 ms before the request went out, 15 ms from the first audio to the wire; the
        // 359 ms between are the LLM's first sentence and its synthesis.
        assert_eq!(t.engine_added(), Some(Duration::from_millis(16)));
        let stages = t.stages();
        assert_eq!(stages.len(), 7);
        assert!(stages.contains(&("endpointing", Duration::from_millis(300))));
        assert!(stages.contains(&("playout_start", Duration::from_millis(15))));
        let m = TurnMetrics::default();
        m.observe(&t);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("parley_turn_stage_seconds_count{stage=\"voice_to_voice\"} 1"));
        assert!(out.contains("parley_turn_engine_added_seconds_count 1"));
    }

    #[test]
    fn missing_marks_leave_stages_out() {
        let t = TurnTimes::starting(Instant::now());
        assert!(t.stages().is_empty());
        assert_eq!(t.voice_to_voice(), None);
        assert_eq!(t.engine_added(), None);
    }
}
