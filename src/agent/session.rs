//! The AI agent of one call, as a tokio task: it carries a [`Conversation`]'s actions out
//! with the configured providers and the call's media rings, and feeds back what happened.
//!
//! Audio never passes through the call task: caller audio comes from the capture pump,
//! reply audio goes straight into the call's playout ring. The call task forwards the media
//! events the conversation needs (speech start/end, DTMF, playout start) and carries out
//! what only it can do (hang up, send DTMF, transfer).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parley_media::playout::PlayoutProducer;
use parley_media::session::MediaEvent;
use parley_media::vad::SpeechEventKind;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conversation::{Action, Conversation, Input, Settings};
use super::tools::run_http_tool;
use crate::config::agent::{HttpToolConfig, LlmConfig, TtsConfig};
use crate::metrics::turns::TurnTimes;
use crate::metrics::Metrics;
use crate::providers::llm::{Llm, LlmEvent, LlmStream};
use crate::providers::stt::{Stt, SttEvent, SttInput, SttSession};
use crate::providers::tts::espeak::EspeakTts;
use crate::providers::tts::{Tts, TtsEvent, TtsTurn};

/// How often queued reply audio is topped up into the playout ring and the playout position
/// reported to the conversation, while a reply is in progress. The position is also read
/// afresh at each speech start, so what a barge-in keeps is exact.
const PACE: Duration = Duration::from_millis(20);
/// TTS audio held outside the ring before the agent stops reading from TTS (backpressure):
/// 2 s at 16 kHz.
const MAX_PENDING_SAMPLES: usize = 32_000;
/// A fallback sentence that cannot be spoken within this long is given up on (hang up).
const FALLBACK_LIMIT: Duration = Duration::from_secs(15);

/// What every AI-agent call shares: the providers, the agent's behaviour, the tools.
/// Cloning is cheap: the providers share their connection pools.
#[derive(Clone)]
pub struct AgentRuntime {
    pub settings: Settings,
    pub llm: Llm,
    pub stt: Option<Stt>,
    pub tts: Tts,
    /// What `tts` was made from, for agents with a voice of their own.
    pub tts_config: TtsConfig,
    /// What `llm` was made from, for agents with a model of their own.
    pub llm_config: LlmConfig,
    /// The local voice: fallback sentences when a provider fails.
    pub local: EspeakTts,
    pub tools: Vec<HttpToolConfig>,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// The VAD's padding around speech, to recover when speech really started and ended.
    pub vad_pad: Duration,
}

/// What the call task tells its agent.
#[derive(Debug)]
pub enum ToAgent {
    /// A media event and when the media thread emitted it.
    Media {
        event: MediaEvent,
        at: std::time::Instant,
    },
    /// The outcome of a [`FromAgent::Transfer`]: what the model is told.
    TransferResult { id: String, content: String },
}

/// What the agent asks of its call.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    Hangup,
    SendDtmf(String),
    /// REFER the caller to `target`; answer with [`ToAgent::TransferResult`].
    Transfer {
        id: String,
        target: String,
    },
    /// A turn's latency marks, for the call's record.
    Turn(TurnTimes),
    /// The conversation as the caller heard it, sent once as the agent stops
    /// ([`super::conversation::Conversation::transcript`]).
    Transcript(serde_json::Value),
}

/// The agent's ends of the call's plumbing.
pub struct AgentIo {
    pub playout: PlayoutProducer,
    /// Caller audio at 16 kHz, as the capture pump drains it.
    pub audio: mpsc::Receiver<Vec<i16>>,
    pub events: mpsc::UnboundedReceiver<ToAgent>,
    pub requests: mpsc::UnboundedSender<FromAgent>,
    pub call_id: String,
    /// A recorded prompt (`media.greeting`) played before the agent speaks.
    pub intro: Option<Arc<Vec<i16>>>,
    /// What the agent knows of the person on the line, and how to text them.
    pub caller: Caller,
}

/// What the agent knows of and can do for the person on the line.
#[derive(Clone, Default)]
pub struct Caller {
    /// Their recent timeline ([`crate::memory::context::render`]); empty: nothing known.
    pub context: String,
    /// Greet them with the LLM when `context` is not empty (`memory.greet_known`).
    pub greet_known: bool,
    /// The language they use (`en`, `es`, `pt`), for the call's STT, voice and replies.
    pub language: Option<String>,
    /// Texting them (`send_sms`), when SMS is configured and their number is known.
    pub sms: Option<SmsLink>,
}

/// How the agent texts the caller during a call.
#[derive(Clone)]
pub struct SmsLink {
    /// The SMS channel's outbox.
    pub sender: Arc<dyn TextSender>,
    pub account_id: String,
    /// The caller's number.
    pub to: String,
    /// The number they called (or are called from), when it is one of the account's.
    pub from: Option<String>,
}

/// A text message the agent sends during a call (`send_sms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentText {
    pub account_id: String,
    /// One of the account's numbers; None: its first.
    pub from: Option<String>,
    pub to: String,
    pub body: String,
    /// A retried tool call sends once.
    pub idempotency_key: String,
}

/// What sends the agent's text messages: the SMS channel, which the agent knows only by this
/// (the channels build on the agent, not the other way round).
pub trait TextSender: Send + Sync {
    /// Queues `text`; the number of SMS parts it takes, or why it cannot be sent.
    fn send_text(
        &self,
        text: AgentText,
    ) -> futures_util::future::BoxFuture<'_, Result<i64, String>>;
}

impl SmsLink {
    /// Sends `arguments`' body; the model is told what happened.
    async fn send(&self, arguments: &str, call_id: &str, seq: usize) -> String {
        let body = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v["body"].as_str().map(str::to_string))
            .unwrap_or_default();
        if body.trim().is_empty() {
            return "Not sent: the text message needs a body.".into();
        }
        let text = AgentText {
            account_id: self.account_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            body,
            idempotency_key: format!("call:{call_id}:{seq}"),
        };
        match self.sender.send_text(text).await {
            Ok(parts) => {
                format!("The text message is on its way to the caller ({parts} part(s)).")
            }
            Err(e) => format!("The text message could not be sent ({e}). Tell the caller."),
        }
    }
}

/// The agent's settings for one call with `caller`.
fn settings_for(base: &Settings, caller: &Caller) -> Settings {
    let mut settings = base.clone();
    if let Some(language) = &caller.language {
        settings.language = language.clone();
        if let Some(note) = super::text::language_note(language) {
            settings.system_prompt = format!("{}\n\n{note}", settings.system_prompt.trim_end());
        }
    }
    if !caller.context.is_empty() {
        settings.system_prompt = format!(
            "{}\n\n{}",
            settings.system_prompt.trim_end(),
            caller.context
        );
        settings.greet_with_llm = caller.greet_known;
    }
    settings.send_sms = caller.sms.is_some();
    settings
}

/// Reply audio not yet in the ring, in playing order.
enum Pending {
    Audio {
        sentence: usize,
        pcm: Vec<i16>,
        offset: usize,
    },
    SentenceDone(usize),
}

/// After a provider failed: the fallback sentence being synthesized, then played.
enum Fallback {
    Synthesizing(tokio::task::JoinHandle<Vec<i16>>),
    Playing { until: u64 },
}

struct Driver {
    rt: Arc<AgentRuntime>,
    conv: Conversation,
    stt: Option<SttSession>,
    llm: Option<LlmStream>,
    tts: Option<TtsTurn>,
    playout: PlayoutProducer,
    pending: VecDeque<Pending>,
    pending_samples: usize,
    tools: JoinSet<(String, String)>,
    requests: mpsc::UnboundedSender<FromAgent>,
    call_id: String,
    fallback: Option<(Fallback, Instant)>,
    hung_up: bool,
    /// The reply's first audio is in the ring and the media thread has not reported
    /// sending it yet.
    awaiting_first_packet: bool,
    /// When the media thread reported the caller's latest speech start.
    speech_started_at: Option<std::time::Instant>,
    /// Texting the caller, when possible.
    sms: Option<SmsLink>,
    /// Text messages sent so far (each one's idempotency key).
    texts: usize,
}

/// Runs the agent until the call ends (its event channel closes); returns the playout
/// producer so the call can keep using the ring.
pub async fn run(rt: Arc<AgentRuntime>, mut io: AgentIo) -> PlayoutProducer {
    if let Some(intro) = io.intro.take() {
        if !play_intro(&mut io, &intro).await {
            return io.playout;
        }
    }
    let now = Instant::now().into_std();
    let settings = settings_for(&rt.settings, &io.caller);
    let language = if settings.language == "auto" {
        rt.settings.language.clone()
    } else {
        settings.language.clone()
    };
    let stt = rt.stt.as_ref().map(|s| s.start(&language));
    let mut d = Driver {
        conv: Conversation::new(settings, now),
        sms: io.caller.sms.clone(),
        texts: 0,
        rt,
        stt,
        llm: None,
        tts: None,
        playout: io.playout,
        pending: VecDeque::new(),
        pending_samples: 0,
        tools: JoinSet::new(),
        requests: io.requests,
        call_id: io.call_id,
        fallback: None,
        hung_up: false,
        awaiting_first_packet: false,
        speech_started_at: None,
    };
    d.conv.handle(now, Input::Answered);
    d.run_actions();
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = d.conv.next_timeout().map(Instant::from_std);
        let pacing = !d.pending.is_empty() || d.conv.replying() || d.fallback.is_some();
        let read_tts = d.pending_samples < MAX_PENDING_SAMPLES;
        tokio::select! {
            ev = io.events.recv() => match ev {
                None => break,
                Some(ToAgent::Media { event, at }) => d.on_media(event, at, &mut io.audio),
                Some(ToAgent::TransferResult { id, content }) => {
                    d.input(Input::ToolResult { id, content });
                }
            },
            Some(pcm) = io.audio.recv() => d.on_audio(pcm),
            ev = next_or_pending(d.stt.as_mut().map(|s| s.next_event())) => d.on_stt(ev),
            ev = next_or_pending(d.llm.as_mut().map(|l| l.next())) => d.on_llm(ev),
            ev = next_or_pending(d.tts.as_mut().map(|t| t.next_event())), if read_tts => d.on_tts(ev),
            Some(done) = d.tools.join_next(), if !d.tools.is_empty() => {
                if let Ok((id, content)) = done {
                    d.input(Input::ToolResult { id, content });
                }
            }
            _ = sleep_until(deadline) => {
                d.conv.handle_timeout(Instant::now().into_std());
            }
            _ = pace.tick(), if pacing => d.pace(),
        }
        d.run_actions();
    }
    let _ = d.requests.send(FromAgent::Transcript(d.conv.transcript()));
    d.playout
}

/// Plays the recorded intro to its end (the caller's speech and keys meanwhile are not for
/// the agent); `false` when the call ended first.
async fn play_intro(io: &mut AgentIo, pcm: &[i16]) -> bool {
    let end = io.playout.written() + pcm.len() as u64;
    let mut pos = 0;
    let mut pace = tokio::time::interval(PACE);
    loop {
        pos += io.playout.push(&pcm[pos..]);
        if pos >= pcm.len() && io.playout.read_position() >= end {
            return true;
        }
        tokio::select! {
            _ = pace.tick() => {}
            ev = io.events.recv() => if ev.is_none() {
                return false;
            },
            Some(_) = io.audio.recv() => {}
        }
    }
}

/// The next item of an optional stream; never resolves when there is none.
async fn next_or_pending<T>(next: Option<impl Future<Output = Option<T>>>) -> Option<T> {
    match next {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; never wakes without one (a `select!` branch that is off).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn input(&mut self, input: Input) {
        self.conv.handle(Instant::now().into_std(), input);
    }

    fn on_media(
        &mut self,
        ev: MediaEvent,
        at: std::time::Instant,
        audio: &mut mpsc::Receiver<Vec<i16>>,
    ) {
        match ev {
            MediaEvent::Speech(s) => {
                let pad = self.rt.vad_pad.as_millis() as u32;
                match s.kind {
                    SpeechEventKind::Start => {
                        // The start is padded back by `pad`: the speech itself began later.
                        let lasted = s.detected_ms.saturating_sub(s.t_ms + pad);
                        self.speech_started_at = Some(at);
                        // What the caller has heard, up to now, for a barge-in.
                        let read = self.playout.read_position();
                        self.input(Input::PlayoutRead { read });
                        self.stt_send(SttInput::SpeechStart);
                        self.input(Input::SpeechStart {
                            lasted: Duration::from_millis(u64::from(lasted)),
                        });
                    }
                    SpeechEventKind::End => {
                        // Everything captured before the end goes to STT before the end does.
                        while let Ok(pcm) = audio.try_recv() {
                            self.on_audio(pcm);
                        }
                        let ago = s.detected_ms.saturating_sub(s.t_ms.saturating_sub(pad));
                        self.stt_send(SttInput::SpeechEnd);
                        self.input(Input::SpeechEnd {
                            ago: Duration::from_millis(u64::from(ago)),
                        });
                    }
                }
            }
            MediaEvent::SpeechOnset => self.input(Input::SpeechOnset),
            MediaEvent::Dtmf(d) => self.input(Input::Dtmf(d.digit)),
            MediaEvent::PlayoutStarted if self.awaiting_first_packet => {
                self.awaiting_first_packet = false;
                // When the packet went out, not when we heard of it.
                self.conv.handle(at, Input::PlayoutStarted);
            }
            _ => {}
        }
    }

    fn stt_send(&mut self, input: SttInput) {
        if let Some(stt) = self.stt.as_mut() {
            let before = stt.dropped();
            stt.send(input);
            if stt.dropped() > before {
                Metrics::inc(&self.rt.metrics.stt_audio_dropped);
            }
        }
    }

    fn on_audio(&mut self, pcm: Vec<i16>) {
        self.stt_send(SttInput::Audio(pcm));
    }

    fn on_stt(&mut self, ev: Option<SttEvent>) {
        let input = match ev {
            Some(SttEvent::Interim { text }) => Input::Transcript {
                text,
                is_final: false,
                speech_final: false,
                language: None,
            },
            Some(SttEvent::Final {
                text,
                speech_final,
                language,
            }) => Input::Transcript {
                text,
                is_final: true,
                speech_final,
                language,
            },
            Some(SttEvent::UtteranceEnd) => Input::UtteranceEnd,
            Some(SttEvent::Error(e)) => {
                tracing::warn!(error = %e, "STT failed");
                self.stt = None;
                Input::ProviderFailed {
                    what: e.to_string(),
                }
            }
            None => {
                self.stt = None;
                Input::ProviderFailed {
                    what: "STT session ended".into(),
                }
            }
        };
        self.input(input);
    }

    fn on_llm(&mut self, ev: Option<Result<LlmEvent, crate::providers::ProviderError>>) {
        let input = match ev {
            Some(Ok(LlmEvent::Text(t))) => Input::LlmText(t),
            Some(Ok(LlmEvent::ToolCall(c))) => Input::LlmToolCall(c),
            Some(Ok(LlmEvent::Done { .. })) | None => {
                self.llm = None;
                Input::LlmDone
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "LLM failed");
                self.llm = None;
                Input::ProviderFailed {
                    what: e.to_string(),
                }
            }
        };
        self.input(input);
    }

    fn on_tts(&mut self, ev: Option<TtsEvent>) {
        match ev {
            Some(TtsEvent::Audio { sentence, pcm }) => {
                self.pending_samples += pcm.len();
                self.pending.push_back(Pending::Audio {
                    sentence,
                    pcm,
                    offset: 0,
                });
                self.flush_pending();
            }
            Some(TtsEvent::SentenceDone { sentence }) => {
                self.pending.push_back(Pending::SentenceDone(sentence));
                self.flush_pending();
            }
            Some(TtsEvent::Error(e)) => {
                tracing::warn!(error = %e, "TTS failed");
                self.tts = None;
                self.input(Input::ProviderFailed {
                    what: e.to_string(),
                });
            }
            // The turn's task ended after its last sentence.
            None => self.tts = None,
        }
    }

    /// Moves pending reply audio into the playout ring as far as it has room, telling the
    /// conversation where each piece landed.
    fn flush_pending(&mut self) {
        while let Some(front) = self.pending.front_mut() {
            match front {
                Pending::Audio {
                    sentence,
                    pcm,
                    offset,
                } => {
                    let at = self.playout.written();
                    // Stamped before the push: a held stream's first packet may leave on
                    // the media thread before this task's next instruction.
                    let queued_at = Instant::now().into_std();
                    let n = self.playout.push(&pcm[*offset..]);
                    let sentence = *sentence;
                    *offset += n;
                    let finished = *offset >= pcm.len();
                    self.pending_samples -= n;
                    if n > 0 {
                        if at <= self.playout.read_position() && self.fallback.is_none() {
                            // The ring was empty: this is the start of audible audio.
                            self.awaiting_first_packet = true;
                        }
                        self.conv.handle(
                            queued_at,
                            Input::AudioQueued {
                                sentence,
                                at,
                                len: n as u64,
                            },
                        );
                    }
                    if !finished {
                        return;
                    }
                    self.pending.pop_front();
                }
                Pending::SentenceDone(sentence) => {
                    let sentence = *sentence;
                    self.pending.pop_front();
                    self.input(Input::SentenceDone { sentence });
                }
            }
        }
    }

    fn drop_pending(&mut self) {
        self.pending.clear();
        self.pending_samples = 0;
    }

    /// Every 20 ms while replying: top up the ring, report the playout position, and move a
    /// fallback along.
    fn pace(&mut self) {
        self.flush_pending();
        let read = self.playout.read_position();
        self.input(Input::PlayoutRead { read });
        self.progress_fallback();
    }

    fn run_actions(&mut self) {
        while let Some(action) = self.conv.poll_action() {
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::StartLlm(request) => {
                self.llm = Some(self.rt.llm.stream(request));
            }
            Action::CancelLlm => self.llm = None,
            Action::OpenTts { language } => {
                self.tts = Some(self.rt.tts.open_turn(&language));
            }
            Action::Speak { sentence, text } => {
                if let Some(turn) = self.tts.as_mut() {
                    let index = turn.speak(text);
                    debug_assert_eq!(index, sentence, "TTS and conversation count alike");
                }
            }
            Action::FinishTts => {
                if let Some(turn) = self.tts.as_mut() {
                    turn.finish();
                }
            }
            Action::CancelTts => {
                self.tts = None;
                self.drop_pending();
            }
            Action::ClearPlayout => {
                self.playout.clear();
                if let Some(at) = self.speech_started_at {
                    // The media thread applies the clear at its next tick.
                    let took = at.elapsed();
                    self.rt.metrics.barge_in.observe(took);
                    tracing::info!(decision_to_clear_us = took.as_micros() as u64, "barge-in");
                }
                self.drop_pending();
                self.awaiting_first_packet = false;
            }
            Action::RunTool(call) if call.name == super::conversation::SEND_SMS => {
                let link = self.sms.clone();
                self.texts += 1;
                let (call_id, seq) = (self.call_id.clone(), self.texts);
                self.tools.spawn(async move {
                    let content = match link {
                        Some(link) => link.send(&call.arguments, &call_id, seq).await,
                        None => "Texting is not available on this call.".into(),
                    };
                    (call.id, content)
                });
            }
            Action::RunTool(call) => {
                let rt = self.rt.clone();
                let call_id = self.call_id.clone();
                self.tools.spawn(async move {
                    let content = run_http_tool(&rt.http, &rt.tools, &call, &call_id).await;
                    (call.id, content)
                });
            }
            Action::SendDtmf(digits) => {
                let _ = self.requests.send(FromAgent::SendDtmf(digits));
            }
            Action::Transfer { id, target } => {
                let _ = self.requests.send(FromAgent::Transfer { id, target });
            }
            Action::SpeakFallback(text) => self.start_fallback(text),
            Action::Hangup => self.hang_up(),
            Action::TurnCompleted(times) => {
                self.rt.metrics.turns.observe(&times);
                let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
                tracing::info!(
                    voice_to_voice_ms = ms(times.voice_to_voice()),
                    engine_added_us = times.engine_added().map(|d| d.as_micros() as u64),
                    stages = ?times
                        .stages()
                        .iter()
                        .map(|(n, d)| format!("{n}={}ms", d.as_millis()))
                        .collect::<Vec<_>>(),
                    "turn"
                );
                let _ = self.requests.send(FromAgent::Turn(times));
            }
        }
    }

    fn hang_up(&mut self) {
        if !self.hung_up {
            self.hung_up = true;
            let _ = self.requests.send(FromAgent::Hangup);
        }
    }

    /// A provider failed: everything in flight stops, the fallback sentence is spoken with
    /// the local voice, then the call ends.
    fn start_fallback(&mut self, text: String) {
        self.rt
            .metrics
            .agent_provider_failures
            .fetch_add(1, Ordering::Relaxed);
        self.llm = None;
        self.tts = None;
        self.stt = None;
        self.tools.abort_all();
        self.playout.clear();
        self.drop_pending();
        let local = self.rt.local.clone();
        let language = self.conv.language().to_string();
        let task = tokio::spawn(async move {
            match local.synthesize(&text, &language).await {
                Ok(pcm) => pcm,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot speak the fallback sentence");
                    Vec::new()
                }
            }
        });
        self.fallback = Some((Fallback::Synthesizing(task), Instant::now()));
    }

    fn progress_fallback(&mut self) {
        let Some((state, since)) = self.fallback.as_mut() else {
            return;
        };
        if since.elapsed() > FALLBACK_LIMIT {
            self.fallback = None;
            self.hang_up();
            return;
        }
        match state {
            Fallback::Synthesizing(task) if task.is_finished() => {
                let pcm = futures_util::FutureExt::now_or_never(task)
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let until = self.playout.written() + pcm.len() as u64;
                self.pending_samples += pcm.len();
                self.pending.push_back(Pending::Audio {
                    sentence: usize::MAX,
                    pcm,
                    offset: 0,
                });
                *state = Fallback::Playing { until };
                self.flush_pending();
            }
            Fallback::Synthesizing(_) => {}
            Fallback::Playing { until } => {
                if self.pending.is_empty() && self.playout.read_position() >= *until {
                    self.fallback = None;
                    self.hang_up();
                }
            }
        }
    }
}
