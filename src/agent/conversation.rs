//! The conversation as a sans-I/O state machine: turn-taking, streaming overlap, barge-in,
//! tools, idle handling and provider failure, with no sockets, tasks or clock of its own.
//!
//! The call's agent task ([`super::session`]) feeds it [`Input`]s (VAD, transcripts, LLM
//! tokens, TTS audio positions, playout progress, DTMF) with the current time, and carries
//! out the [`Action`]s it asks for (start or cancel the LLM, speak a sentence, clear the
//! playout, run a tool, hang up). Timers are asked for with [`Conversation::next_timeout`]
//! and delivered with [`Conversation::handle_timeout`]. Tests drive it with simulated time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::heard::ReplyAudio;
use super::sentences::SentenceSplitter;
use crate::metrics::turns::TurnTimes;
use crate::providers::llm::{ChatMessage, ChatRequest, Role, ToolCall, ToolSpec};

/// Built-in tools the LLM may call.
pub const END_CALL: &str = "end_call";
pub const TRANSFER_CALL: &str = "transfer_call";
pub const SEND_DTMF: &str = "send_dtmf";
/// Offered when the caller can be texted (`Settings::send_sms`); carried out by the session.
pub const SEND_SMS: &str = "send_sms";

/// What the LLM is told when it greets a caller it remembers.
pub const GREET_KNOWN: &str = "The call has just been answered. Greet the caller in one short \
     sentence; if what you remember of them makes it natural, refer to it briefly.";

/// A reply may call tools and go back to the LLM this many times before it must answer.
const MAX_TOOL_ROUNDS: usize = 5;
/// After the VAD sees possible speech, how long the end of a turn waits for it to be
/// confirmed (the VAD's `Start` comes `min_speech_ms`, 250 by default, plus a window later).
const ONSET_HOLD: Duration = Duration::from_millis(400);
/// DTMF digits typed within this long of each other form one input.
const DTMF_GAP: Duration = Duration::from_millis(1_500);

/// How the agent behaves (from `[agent]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub system_prompt: String,
    pub greeting: String,
    /// `en`, `es`, `pt`, or `auto`.
    pub language: String,
    pub interruptible: bool,
    pub barge_in_min: Duration,
    pub turn_silence: Duration,
    pub turn_max_wait: Duration,
    pub idle_prompt_after: Option<Duration>,
    pub idle_hangup_after: Option<Duration>,
    pub idle_prompt: String,
    pub goodbye: String,
    pub fallback: String,
    pub transfer_target: Option<String>,
    /// HTTP tools (the built-in ones are added by the conversation).
    pub tools: Vec<ToolSpec>,
    /// Greet with the LLM (a caller the agent remembers) instead of the fixed greeting.
    pub greet_with_llm: bool,
    /// Offer the `send_sms` tool (the caller's number can be texted).
    pub send_sms: bool,
}

impl Settings {
    pub fn from_config(agent: &crate::config::agent::AgentConfig) -> Settings {
        let secs = |s: u32| (s > 0).then(|| Duration::from_secs(u64::from(s)));
        Settings {
            system_prompt: agent.prompt.clone(),
            greeting: agent.greeting.clone(),
            language: agent.language.clone(),
            interruptible: agent.interruptible,
            barge_in_min: Duration::from_millis(u64::from(agent.barge_in_min_ms)),
            turn_silence: Duration::from_millis(u64::from(agent.turn_silence_ms)),
            turn_max_wait: Duration::from_millis(u64::from(agent.turn_max_wait_ms)),
            idle_prompt_after: secs(agent.idle_prompt_s),
            idle_hangup_after: secs(agent.idle_hangup_s),
            idle_prompt: agent.idle_prompt.clone(),
            goodbye: agent.goodbye.clone(),
            fallback: agent.fallback.clone(),
            transfer_target: agent.transfer_target.clone(),
            tools: tool_specs(&agent.tools),
            greet_with_llm: false,
            send_sms: false,
        }
    }
}

/// What the LLM is told of HTTP tools.
pub fn tool_specs(tools: &[crate::config::agent::HttpToolConfig]) -> Vec<ToolSpec> {
    tools
        .iter()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: serde_json::from_str(&t.parameters)
                .unwrap_or_else(|_| serde_json::json!({"type": "object"})),
        })
        .collect()
}

/// What happened, as the agent task saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The call was answered: greet.
    Answered,
    /// The VAD heard possible speech (not yet long enough to be a start): the caller may be
    /// resuming after a pause, so the turn does not end for a moment.
    SpeechOnset,
    /// The VAD decided the caller started speaking; the speech began `lasted` ago.
    SpeechStart {
        lasted: Duration,
    },
    /// The VAD decided the caller stopped; the speech ended `ago` ago.
    SpeechEnd {
        ago: Duration,
    },
    /// A transcript from STT.
    Transcript {
        text: String,
        is_final: bool,
        speech_final: bool,
        language: Option<String>,
    },
    /// STT's end-of-utterance signal.
    UtteranceEnd,
    Dtmf(char),
    LlmText(String),
    LlmToolCall(ToolCall),
    LlmDone,
    /// The result of a tool the conversation asked to run.
    ToolResult {
        id: String,
        content: String,
    },
    /// `len` samples of sentence `sentence` were written to the playout at position `at`.
    AudioQueued {
        sentence: usize,
        at: u64,
        len: u64,
    },
    /// All audio of sentence `sentence` has been queued.
    SentenceDone {
        sentence: usize,
    },
    /// The media thread's read position in the playout stream moved to `read`.
    PlayoutRead {
        read: u64,
    },
    /// The first packet carrying queued audio went out (media `PlayoutStarted`).
    PlayoutStarted,
    /// A provider failed (STT, LLM or TTS); the call cannot go on.
    ProviderFailed {
        what: String,
    },
}

/// What the agent task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    StartLlm(ChatRequest),
    CancelLlm,
    /// Open a TTS turn in `language` for the reply's sentences.
    OpenTts {
        language: String,
    },
    /// Synthesize sentence `sentence` of the open turn (indexes count from 0 per turn).
    Speak {
        sentence: usize,
        text: String,
    },
    /// No more sentences in this turn.
    FinishTts,
    CancelTts,
    /// Drop what is queued for playout (barge-in).
    ClearPlayout,
    /// Run an HTTP tool and report [`Input::ToolResult`].
    RunTool(ToolCall),
    SendDtmf(String),
    /// REFER the caller to `target` and report [`Input::ToolResult`] for `id`.
    Transfer {
        id: String,
        target: String,
    },
    /// Speak `text` with the local voice, then hang up once it has played.
    SpeakFallback(String),
    Hangup,
    /// A turn's latency marks are complete (log, metrics, CDR).
    TurnCompleted(TurnTimes),
}

/// What a reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    /// Answering the caller through the LLM.
    Answer,
    /// A fixed sentence (greeting, idle prompt, goodbye).
    Canned,
}

/// The agent's reply in progress.
#[derive(Debug)]
struct Reply {
    kind: ReplyKind,
    audio: ReplyAudio,
    splitter: SentenceSplitter,
    /// Text the LLM produced in this round.
    text: String,
    llm_active: bool,
    tts_open: bool,
    tts_finished: bool,
    tool_calls: Vec<ToolCall>,
    pending_tools: usize,
    rounds: usize,
    hangup_after: bool,
    /// Index in the history of this round's assistant message, once written.
    history_index: Option<usize>,
    times: TurnTimes,
    /// Latency marks already reported.
    reported: bool,
}

impl Reply {
    fn new(kind: ReplyKind, times: TurnTimes) -> Reply {
        Reply {
            kind,
            audio: ReplyAudio::new(),
            splitter: SentenceSplitter::new(),
            text: String::new(),
            llm_active: false,
            tts_open: false,
            tts_finished: false,
            tool_calls: Vec::new(),
            pending_tools: 0,
            rounds: 0,
            hangup_after: false,
            history_index: None,
            times,
            reported: false,
        }
    }
}

/// The caller's side of the current turn.
#[derive(Debug, Default)]
struct UserTurn {
    in_speech: bool,
    /// When the last stretch of speech ended (backdated to the speech itself).
    speech_end: Option<Instant>,
    /// When the VAD reported that end.
    speech_end_seen: Option<Instant>,
    finals: String,
    interim: String,
    /// STT has said the speech so far is final (speech_final, utterance end, or a final
    /// after the VAD end).
    stt_done: bool,
    last_final: Option<Instant>,
}

impl UserTurn {
    fn has_text(&self) -> bool {
        !self.finals.trim().is_empty() || !self.interim.trim().is_empty()
    }
}

pub struct Conversation {
    settings: Settings,
    history: Vec<ChatMessage>,
    language: String,
    user: UserTurn,
    reply: Option<Reply>,
    /// Latest playout read position.
    read: u64,
    /// Pending barge-in decision for speech that has not lasted long enough yet.
    barge_at: Option<Instant>,
    /// Possible speech was heard: the turn may not end before this (or a `SpeechStart`).
    onset_until: Option<Instant>,
    /// Since when nothing has happened (for the idle prompt and hang-up).
    idle_since: Instant,
    idle_prompted: bool,
    dtmf: String,
    dtmf_until: Option<Instant>,
    /// A hang-up is on its way; inputs are ignored.
    ending: bool,
    actions: VecDeque<Action>,
}

impl Conversation {
    pub fn new(settings: Settings, now: Instant) -> Conversation {
        let language = if settings.language == "auto" {
            "en".to_string()
        } else {
            settings.language.clone()
        };
        let mut prompt = settings.system_prompt.clone();
        if settings.language == "auto" {
            prompt.push_str(
                " Always answer in the language the caller speaks (English, Spanish or \
                 Portuguese).",
            );
        }
        Conversation {
            history: vec![ChatMessage::system(prompt)],
            settings,
            language,
            user: UserTurn::default(),
            reply: None,
            read: 0,
            barge_at: None,
            onset_until: None,
            idle_since: now,
            idle_prompted: false,
            dtmf: String::new(),
            dtmf_until: None,
            ending: false,
            actions: VecDeque::new(),
        }
    }

    /// The conversation so far, as the LLM sees it.
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// What was said, in order, for the call's record: the caller's turns and the agent's
    /// replies as far as the caller heard them (`[{"role": "caller"|"agent", "text"}]`);
    /// the prompt and tool traffic are left out.
    pub fn transcript(&self) -> serde_json::Value {
        let lines = self.history.iter().filter_map(|m| {
            let role = match m.role {
                Role::User => "caller",
                Role::Assistant => "agent",
                Role::System | Role::Tool => return None,
            };
            let text = m.content.trim();
            (!text.is_empty()).then(|| serde_json::json!({ "role": role, "text": text }))
        });
        serde_json::Value::Array(lines.collect())
    }

    /// The language the agent speaks now.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the agent is producing or playing a reply.
    pub fn replying(&self) -> bool {
        self.reply.is_some()
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.ending {
            return;
        }
        match input {
            Input::Answered if self.settings.greet_with_llm => {
                self.history.push(ChatMessage::system(GREET_KNOWN));
                let mut reply = Reply::new(ReplyKind::Answer, TurnTimes::starting(now));
                reply.times.llm_request = Some(now);
                reply.llm_active = true;
                self.reply = Some(reply);
                self.actions.push_back(Action::StartLlm(self.request()));
            }
            Input::Answered => {
                let greeting = self.settings.greeting.clone();
                if !greeting.trim().is_empty() {
                    self.canned(now, &greeting, false);
                }
            }
            Input::SpeechOnset => {
                if !self.user.in_speech {
                    self.onset_until = Some(now + ONSET_HOLD);
                }
            }
            Input::SpeechStart { lasted } => {
                self.onset_until = None;
                self.on_speech_start(now, lasted)
            }
            Input::SpeechEnd { ago } => {
                self.user.in_speech = false;
                self.user.speech_end = Some(now.checked_sub(ago).unwrap_or(now));
                self.user.speech_end_seen = Some(now);
                // Speech too short to interrupt.
                self.barge_at = None;
                self.idle_since = now;
            }
            Input::Transcript {
                text,
                is_final,
                speech_final,
                language,
            } => self.on_transcript(now, text, is_final, speech_final, language),
            Input::UtteranceEnd => {
                if self.user.has_text() {
                    self.user.stt_done = true;
                }
            }
            Input::Dtmf(d) => self.on_dtmf(now, d),
            Input::LlmText(t) => self.on_llm_text(now, &t),
            Input::LlmToolCall(call) => {
                if let Some(r) = self.reply.as_mut() {
                    r.times.llm_first_token.get_or_insert(now);
                    r.tool_calls.push(call);
                }
            }
            Input::LlmDone => self.on_llm_done(now),
            Input::ToolResult { id, content } => self.on_tool_result(now, id, content),
            Input::AudioQueued { sentence, at, len } => {
                if let Some(r) = self.reply.as_mut() {
                    r.times.tts_first_audio.get_or_insert(now);
                    r.audio.queued(sentence, at, len);
                }
            }
            Input::SentenceDone { sentence } => {
                if let Some(r) = self.reply.as_mut() {
                    r.audio.sentence_complete(sentence);
                }
            }
            Input::PlayoutRead { read } => self.read = self.read.max(read),
            Input::PlayoutStarted => {
                if let Some(r) = self.reply.as_mut() {
                    if r.audio.has_audio() && r.times.first_audio_out.is_none() {
                        r.times.first_audio_out = Some(now);
                    }
                }
            }
            Input::ProviderFailed { what } => self.fail(&what),
        }
        self.progress(now);
    }

    /// When [`Conversation::handle_timeout`] wants to be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.ending {
            return None;
        }
        let mut t: Vec<Instant> = Vec::new();
        t.extend(self.barge_at);
        t.extend(self.dtmf_until);
        if let (Some(seen), false, None) =
            (self.user.speech_end_seen, self.user.in_speech, &self.reply)
        {
            // The silence deadline matters only once STT has said its last word; before
            // that, the turn waits for the transcript up to the maximum (a deadline already
            // passed with nothing to do would be returned forever).
            // While possible speech holds the turn, the hold's end is the next deadline (the
            // others may have passed meanwhile and would be returned forever).
            if let Some(until) = self.onset_until {
                t.push(until);
            } else {
                if self.user.stt_done && !self.user.finals.trim().is_empty() {
                    let end = self.user.speech_end.unwrap_or(seen);
                    t.push(end + self.settings.turn_silence);
                }
                t.push(seen + self.settings.turn_max_wait);
            }
        }
        if self.reply.is_none() && !self.user.in_speech {
            if let Some(after) = self.idle_deadline() {
                t.push(after);
            }
        }
        t.into_iter().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ending {
            return;
        }
        if self.barge_at.is_some_and(|at| now >= at) {
            self.barge_at = None;
            if self.user.in_speech {
                self.barge_in(now);
            }
        }
        if self.dtmf_until.is_some_and(|at| now >= at) {
            self.flush_dtmf(now);
        }
        if self.onset_until.is_some_and(|at| now >= at) {
            // Not confirmed as speech: a noise.
            self.onset_until = None;
        }
        if self.reply.is_none() && !self.user.in_speech {
            if let Some(at) = self.idle_deadline() {
                if now >= at {
                    self.on_idle(now);
                }
            }
        }
        self.progress(now);
    }

    fn idle_deadline(&self) -> Option<Instant> {
        if self.user.has_text() {
            return None;
        }
        if self.idle_prompted {
            self.settings.idle_hangup_after.map(|d| self.idle_since + d)
        } else {
            self.settings.idle_prompt_after.map(|d| self.idle_since + d)
        }
    }

    fn on_idle(&mut self, now: Instant) {
        if self.idle_prompted {
            let goodbye = self.settings.goodbye.clone();
            self.canned(now, &goodbye, true);
        } else {
            self.idle_prompted = true;
            let prompt = self.settings.idle_prompt.clone();
            self.canned(now, &prompt, false);
        }
    }

    fn on_speech_start(&mut self, now: Instant, lasted: Duration) {
        self.user.in_speech = true;
        self.user.speech_end = None;
        self.user.speech_end_seen = None;
        self.user.stt_done = false;
        self.idle_prompted = false;
        self.idle_since = now;
        let Some(reply) = self.reply.as_ref() else {
            return;
        };
        // A reply that ends the call is not taken back: the model has decided.
        if reply.kind == ReplyKind::Answer && !reply.hangup_after && !self.reply_audible() {
            // The caller went on talking before hearing anything: they had not finished.
            // Take the turn back and wait for the rest.
            self.withdraw_reply();
            return;
        }
        if !self.settings.interruptible || reply.hangup_after {
            return;
        }
        if lasted >= self.settings.barge_in_min {
            self.barge_in(now);
        } else {
            self.barge_at = Some(now + (self.settings.barge_in_min - lasted));
        }
    }

    /// Whether any of the current reply's audio has reached the caller.
    fn reply_audible(&self) -> bool {
        self.reply
            .as_ref()
            .is_some_and(|r| r.audio.has_audio() && !r.audio.heard_text(self.read).is_empty())
            || self
                .reply
                .as_ref()
                .is_some_and(|r| r.times.first_audio_out.is_some())
    }

    /// Cancels a reply nobody heard and puts the user's words back into the open turn.
    fn withdraw_reply(&mut self) {
        if let Some(r) = self.reply.take() {
            self.cancel_streams(&r);
            if let Some(i) = r.history_index {
                self.history.truncate(i);
            }
            // The user message that started it.
            if let Some(last) = self.history.last() {
                if last.role == Role::User {
                    let text = self.history.pop().map(|m| m.content).unwrap_or_default();
                    self.user.finals = format!("{text} {}", self.user.finals).trim().to_string();
                }
            }
        }
    }

    fn cancel_streams(&mut self, r: &Reply) {
        if r.llm_active {
            self.actions.push_back(Action::CancelLlm);
        }
        if r.tts_open {
            self.actions.push_back(Action::CancelTts);
        }
    }

    /// The caller interrupts: stop the audio now, cancel generation, keep what was heard.
    fn barge_in(&mut self, _now: Instant) {
        let Some(r) = self.reply.take() else {
            return;
        };
        self.actions.push_back(Action::ClearPlayout);
        self.cancel_streams(&r);
        let heard = r.audio.heard_text(self.read);
        match r.history_index {
            Some(i) => {
                if let Some(m) = self.history.get_mut(i) {
                    m.content = heard;
                }
            }
            None if !heard.is_empty() => self.history.push(ChatMessage::assistant(heard)),
            None => {}
        }
    }

    fn on_transcript(
        &mut self,
        now: Instant,
        text: String,
        is_final: bool,
        speech_final: bool,
        language: Option<String>,
    ) {
        if let Some(lang) = language {
            if self.settings.language == "auto"
                && crate::config::agent::LANGUAGES.contains(&lang.as_str())
            {
                self.language = lang;
            }
        }
        let text = text.trim();
        if !is_final {
            self.user.interim = text.to_string();
            return;
        }
        self.user.interim.clear();
        if !text.is_empty() {
            if !self.user.finals.is_empty() {
                self.user.finals.push(' ');
            }
            self.user.finals.push_str(text);
            self.user.last_final = Some(now);
            if self.user.speech_end_seen.is_some() {
                self.user.stt_done = true;
            }
        }
        if speech_final && self.user.has_text() {
            self.user.stt_done = true;
        }
    }

    fn on_dtmf(&mut self, now: Instant, digit: char) {
        self.idle_prompted = false;
        self.idle_since = now;
        if self.reply.as_ref().is_some_and(|r| !r.hangup_after) && self.settings.interruptible {
            self.barge_in(now);
        }
        self.dtmf.push(digit);
        if digit == '#' {
            self.flush_dtmf(now);
        } else {
            self.dtmf_until = Some(now + DTMF_GAP);
        }
    }

    fn flush_dtmf(&mut self, now: Instant) {
        self.dtmf_until = None;
        let digits = std::mem::take(&mut self.dtmf);
        if digits.is_empty() || self.reply.is_some() {
            return;
        }
        let text = format!("[The caller pressed the telephone keys: {digits}]");
        let times = TurnTimes::starting(now);
        self.start_answer(now, text, times);
    }

    /// Ends the user's turn when the silence and the transcript say so.
    fn maybe_end_turn(&mut self, now: Instant) {
        if self.reply.is_some() || self.user.in_speech {
            return;
        }
        if self.onset_until.is_some_and(|until| now < until) {
            // The caller may be going on: wait for the VAD to say.
            return;
        }
        let (Some(seen), end) = (self.user.speech_end_seen, self.user.speech_end) else {
            return;
        };
        let end = end.unwrap_or(seen);
        let silent_enough = now >= end + self.settings.turn_silence;
        let waited_max = now >= seen + self.settings.turn_max_wait;
        let finals = self.user.finals.trim().to_string();
        let ready = silent_enough && self.user.stt_done && !finals.is_empty();
        if !(ready || waited_max) {
            return;
        }
        let text = if finals.is_empty() {
            self.user.interim.trim().to_string()
        } else {
            finals
        };
        let stt_final = self.user.last_final;
        self.user = UserTurn::default();
        if text.is_empty() {
            // Noise, a cough: no words, no turn.
            return;
        }
        let mut times = TurnTimes::starting(now);
        times.speech_end = Some(end);
        times.stt_final = stt_final;
        self.start_answer(now, text, times);
    }

    fn start_answer(&mut self, now: Instant, user_text: String, times: TurnTimes) {
        self.history.push(ChatMessage::user(user_text));
        let mut reply = Reply::new(ReplyKind::Answer, times);
        reply.times.llm_request = Some(now);
        reply.llm_active = true;
        self.reply = Some(reply);
        self.actions.push_back(Action::StartLlm(self.request()));
    }

    fn request(&self) -> ChatRequest {
        let mut tools = vec![ToolSpec {
            name: END_CALL.into(),
            description: "End the call. Say goodbye in your reply text first.".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        }];
        if self.settings.transfer_target.is_some() {
            tools.push(ToolSpec {
                name: TRANSFER_CALL.into(),
                description: "Transfer the caller to a human colleague.".into(),
                parameters: serde_json::json!({"type": "object", "properties": {}}),
            });
        }
        tools.push(ToolSpec {
            name: SEND_DTMF.into(),
            description: "Send telephone keypad tones (digits 0-9, * and #) to the caller's \
                          line, for navigating another phone menu."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"digits": {"type": "string"}},
                "required": ["digits"]
            }),
        });
        if self.settings.send_sms {
            tools.push(ToolSpec {
                name: SEND_SMS.into(),
                description: "Send the caller a text message (SMS) on the number they are \
                              calling from, for things better read than heard: an address, \
                              a link, a confirmation number."
                    .into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"body": {"type": "string", "description": "The text to send"}},
                    "required": ["body"]
                }),
            });
        }
        tools.extend(self.settings.tools.iter().cloned());
        ChatRequest {
            messages: self.history.clone(),
            tools,
        }
    }

    fn on_llm_text(&mut self, now: Instant, text: &str) {
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        r.times.llm_first_token.get_or_insert(now);
        r.text.push_str(text);
        let pieces = r.splitter.push(text);
        for piece in pieces {
            self.speak(now, &piece);
        }
    }

    /// Sends one sentence of the current reply to TTS, opening the turn if needed.
    fn speak(&mut self, now: Instant, text: &str) {
        let language = self.language.clone();
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        if !r.tts_open {
            r.tts_open = true;
            self.actions.push_back(Action::OpenTts { language });
        }
        r.times.tts_request.get_or_insert(now);
        let sentence = r.audio.add_sentence(text);
        self.actions.push_back(Action::Speak {
            sentence,
            text: text.to_string(),
        });
    }

    fn on_llm_done(&mut self, now: Instant) {
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        r.llm_active = false;
        if let Some(rest) = r.splitter.finish() {
            self.speak(now, &rest);
        }
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        let calls = std::mem::take(&mut r.tool_calls);
        let mut message = ChatMessage::assistant(r.text.clone());
        message.tool_calls = calls.clone();
        if !message.content.is_empty() || !calls.is_empty() {
            r.history_index = Some(self.history.len());
            self.history.push(message);
        }
        if calls.is_empty() {
            self.finish_tts();
            return;
        }
        let r = self.reply.as_mut().expect("checked above");
        r.rounds += 1;
        let said_something = !r.text.trim().is_empty();
        r.text.clear();
        let mut pending = 0;
        let mut results = Vec::new();
        for call in calls {
            match call.name.as_str() {
                END_CALL => {
                    r.hangup_after = true;
                    results.push((call.id, "The call will end after your reply.".to_string()));
                }
                SEND_DTMF => {
                    let digits: String = serde_json::from_str::<serde_json::Value>(&call.arguments)
                        .ok()
                        .and_then(|v| v["digits"].as_str().map(str::to_string))
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| c.is_ascii_digit() || "*#ABCD".contains(*c))
                        .collect();
                    let result = if digits.is_empty() {
                        "No valid digits given.".to_string()
                    } else {
                        self.actions.push_back(Action::SendDtmf(digits.clone()));
                        format!("Sent the tones {digits}.")
                    };
                    results.push((call.id, result));
                }
                TRANSFER_CALL => match self.settings.transfer_target.clone() {
                    Some(target) => {
                        pending += 1;
                        self.actions.push_back(Action::Transfer {
                            id: call.id,
                            target,
                        });
                    }
                    None => results.push((call.id, "Transfers are not available.".into())),
                },
                SEND_SMS if self.settings.send_sms => {
                    pending += 1;
                    self.actions.push_back(Action::RunTool(call));
                }
                name if self.settings.tools.iter().any(|t| t.name == name) => {
                    pending += 1;
                    self.actions.push_back(Action::RunTool(call));
                }
                other => results.push((call.id, format!("Unknown tool {other}."))),
            }
        }
        let r = self.reply.as_mut().expect("checked above");
        r.pending_tools = pending;
        for (id, content) in results {
            self.history.push(ChatMessage::tool_result(id, content));
        }
        let r = self.reply.as_mut().expect("checked above");
        if r.hangup_after {
            // Nothing more to ask: say goodbye if the model did not, then end.
            if !said_something && r.audio.full_text().trim().is_empty() {
                let goodbye = self.settings.goodbye.clone();
                self.speak(now, &goodbye);
            }
            self.finish_tts();
            return;
        }
        if pending == 0 {
            self.next_round(now);
        }
    }

    fn on_tool_result(&mut self, now: Instant, id: String, content: String) {
        self.history.push(ChatMessage::tool_result(id, content));
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        r.pending_tools = r.pending_tools.saturating_sub(1);
        if r.pending_tools == 0 {
            self.next_round(now);
        }
    }

    /// Asks the LLM again with the tool results.
    fn next_round(&mut self, now: Instant) {
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        if r.rounds >= MAX_TOOL_ROUNDS {
            tracing::warn!(rounds = r.rounds, "too many tool rounds; not asking again");
            self.finish_tts();
            return;
        }
        r.llm_active = true;
        r.history_index = None;
        r.splitter = SentenceSplitter::new();
        r.times.llm_request.get_or_insert(now);
        self.actions.push_back(Action::StartLlm(self.request()));
    }

    fn finish_tts(&mut self) {
        if let Some(r) = self.reply.as_mut() {
            if r.tts_open && !r.tts_finished {
                r.tts_finished = true;
                self.actions.push_back(Action::FinishTts);
            } else if !r.tts_open {
                r.tts_finished = true;
            }
        }
    }

    /// A fixed sentence spoken as a reply of its own.
    fn canned(&mut self, now: Instant, text: &str, hangup_after: bool) {
        let mut reply = Reply::new(ReplyKind::Canned, TurnTimes::starting(now));
        reply.hangup_after = hangup_after;
        reply.history_index = Some(self.history.len());
        self.history.push(ChatMessage::assistant(text));
        self.reply = Some(reply);
        self.speak(now, text);
        self.finish_tts();
    }

    fn fail(&mut self, what: &str) {
        tracing::warn!(
            what,
            "provider failed; speaking the fallback and hanging up"
        );
        if let Some(r) = self.reply.take() {
            self.cancel_streams(&r);
        }
        self.ending = true;
        self.actions
            .push_back(Action::SpeakFallback(self.settings.fallback.clone()));
    }

    /// Moves things along after any input or timeout.
    fn progress(&mut self, now: Instant) {
        if self.ending {
            return;
        }
        self.maybe_end_turn(now);
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        if !r.reported && r.times.first_audio_out.is_some() {
            r.reported = true;
            if r.kind == ReplyKind::Answer {
                self.actions
                    .push_back(Action::TurnCompleted(r.times.clone()));
            }
        }
        let done = !r.llm_active
            && r.pending_tools == 0
            && r.tts_finished
            && r.audio.all_queued()
            && self.read >= r.audio.end();
        if !done {
            return;
        }
        let r = self.reply.take().expect("checked above");
        if r.tts_open {
            self.actions.push_back(Action::CancelTts);
        }
        self.idle_since = now;
        if r.hangup_after {
            self.ending = true;
            self.actions.push_back(Action::Hangup);
        }
    }
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
