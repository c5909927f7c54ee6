//! The conversation state machine driven with simulated time.

use super::*;

fn settings() -> Settings {
    Settings {
        system_prompt: "You are a test agent.".into(),
        greeting: "Hello, this is Parley.".into(),
        language: "en".into(),
        interruptible: true,
        barge_in_min: Duration::from_millis(250),
        turn_silence: Duration::from_millis(300),
        turn_max_wait: Duration::from_millis(1500),
        idle_prompt_after: Some(Duration::from_secs(10)),
        idle_hangup_after: Some(Duration::from_secs(20)),
        idle_prompt: "Are you still there?".into(),
        goodbye: "Goodbye!".into(),
        fallback: "Sorry, technical trouble.".into(),
        transfer_target: None,
        tools: vec![ToolSpec {
            name: "book".into(),
            description: "Books a table".into(),
            parameters: serde_json::json!({"type": "object"}),
        }],
        greet_with_llm: false,
        send_sms: false,
    }
}

/// A conversation on a simulated clock, with the playout stream modelled by positions.
struct Sim {
    c: Conversation,
    now: Instant,
    /// Playout write position (samples queued so far).
    written: u64,
    actions: Vec<Action>,
}

impl Sim {
    fn new(s: Settings) -> Sim {
        let now = Instant::now();
        Sim {
            c: Conversation::new(s, now),
            now,
            written: 0,
            actions: Vec::new(),
        }
    }

    fn input(&mut self, i: Input) -> Vec<Action> {
        self.c.handle(self.now, i);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.c.poll_action() {
            out.push(a);
        }
        self.actions.extend(out.clone());
        out
    }

    /// Advances the clock, firing timeouts on the way.
    fn advance(&mut self, d: Duration) -> Vec<Action> {
        let until = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.c.next_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.c.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = until;
        out
    }

    fn ms(&mut self, n: u64) -> Vec<Action> {
        self.advance(Duration::from_millis(n))
    }

    /// The caller says `text`: speech start (already 250 ms in), a final transcript, speech
    /// end 100 ms after it stopped.
    fn caller_says(&mut self, text: &str) -> Vec<Action> {
        let mut out = self.input(Input::SpeechStart {
            lasted: Duration::from_millis(250),
        });
        out.extend(self.ms(800));
        out.extend(self.input(Input::Transcript {
            text: text.into(),
            is_final: true,
            speech_final: true,
            language: None,
        }));
        out.extend(self.input(Input::SpeechEnd {
            ago: Duration::from_millis(100),
        }));
        out
    }

    /// TTS audio for `sentence`: `ms` of 16 kHz audio queued at once, sentence complete.
    fn tts(&mut self, sentence: usize, ms: u64) -> Vec<Action> {
        let len = ms * 16;
        let at = self.written;
        self.written += len;
        let mut out = self.input(Input::AudioQueued { sentence, at, len });
        out.extend(self.input(Input::SentenceDone { sentence }));
        out
    }

    /// The media thread has read up to `read`.
    fn played_to(&mut self, read: u64) -> Vec<Action> {
        self.input(Input::PlayoutRead { read })
    }

    fn play_all(&mut self) -> Vec<Action> {
        let w = self.written;
        let mut out = self.input(Input::PlayoutStarted);
        out.extend(self.played_to(w));
        out
    }

    fn llm(&mut self, tokens: &[&str]) -> Vec<Action> {
        let mut out = Vec::new();
        for t in tokens {
            out.extend(self.input(Input::LlmText((*t).into())));
        }
        out.extend(self.input(Input::LlmDone));
        out
    }

    /// Greets and plays the greeting out.
    fn greeted(s: Settings) -> Sim {
        let mut sim = Sim::new(s);
        sim.input(Input::Answered);
        sim.tts(0, 1000);
        sim.play_all();
        assert!(!sim.c.replying());
        sim
    }
}

fn speaks(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Speak { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn llm_request(actions: &[Action]) -> Option<ChatRequest> {
    actions.iter().find_map(|a| match a {
        Action::StartLlm(r) => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn greeting_is_spoken_and_kept_in_the_context() {
    let mut sim = Sim::new(settings());
    let a = sim.input(Input::Answered);
    assert_eq!(
        a,
        vec![
            Action::OpenTts {
                language: "en".into()
            },
            Action::Speak {
                sentence: 0,
                text: "Hello, this is Parley.".into()
            },
            Action::FinishTts,
        ]
    );
    sim.tts(0, 1000);
    assert!(sim.c.replying());
    let a = sim.play_all();
    assert_eq!(a, vec![Action::CancelTts], "the finished turn is released");
    assert!(!sim.c.replying());
    let h = sim.c.history();
    assert_eq!(h[0].role, Role::System);
    assert_eq!(h[1], ChatMessage::assistant("Hello, this is Parley."));
}

#[test]
fn the_turn_ends_on_silence_plus_the_final_transcript() {
    let mut sim = Sim::greeted(settings());
    let a = sim.caller_says("I'd like to book a table.");
    assert!(llm_request(&a).is_none(), "not before the minimum silence");
    // Speech ended 100 ms before the VAD said so; 300 ms of silence are needed.
    let a = sim.ms(150);
    assert!(llm_request(&a).is_none());
    let a = sim.ms(60);
    let req = llm_request(&a).expect("turn over after 300 ms of silence");
    let last = req.messages.last().unwrap();
    assert_eq!(*last, ChatMessage::user("I'd like to book a table."));
    // Built-in and configured tools are offered.
    let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["end_call", "send_dtmf", "book"]);
}

#[test]
fn possible_speech_in_a_pause_holds_the_end_of_the_turn() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("I'd like to book a table");
    // 150 ms into the pause the VAD hears something that may be the caller going on.
    sim.ms(50);
    sim.input(Input::SpeechOnset);
    let a = sim.ms(300);
    assert!(
        llm_request(&a).is_none(),
        "held while the caller may be resuming"
    );
    // It was: the VAD confirms, the caller finishes, and the turn holds both parts.
    sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(250),
    });
    sim.ms(600);
    sim.input(Input::Transcript {
        text: "for two.".into(),
        is_final: true,
        speech_final: true,
        language: None,
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    let req = llm_request(&sim.ms(400)).expect("one turn");
    assert_eq!(
        req.messages.last().unwrap().content,
        "I'd like to book a table for two."
    );
    // An onset that never becomes speech (a cough) delays the end by the hold only.
    sim.input(Input::LlmText("Sure.".into()));
    sim.input(Input::LlmDone);
    sim.tts(0, 300);
    sim.play_all();
    sim.caller_says("Thanks");
    sim.input(Input::SpeechOnset);
    let a = sim.ms(300);
    assert!(llm_request(&a).is_none());
    let a = sim.ms(150);
    assert!(
        llm_request(&a).is_some(),
        "the end of turn follows the hold"
    );
}

#[test]
fn without_a_final_the_turn_waits_at_most_the_maximum() {
    let mut sim = Sim::greeted(settings());
    sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(250),
    });
    sim.input(Input::Transcript {
        text: "what time do you".into(),
        is_final: false,
        speech_final: false,
        language: None,
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    assert!(llm_request(&sim.ms(1400)).is_none());
    let req = llm_request(&sim.ms(200)).expect("max wait");
    assert_eq!(
        req.messages.last().unwrap().content,
        "what time do you",
        "the interim is all there is"
    );
}

#[test]
fn speech_without_words_is_not_a_turn() {
    let mut sim = Sim::greeted(settings());
    sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(250),
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    assert!(llm_request(&sim.ms(3000)).is_none());
    assert!(!sim.c.replying());
}

#[test]
fn sentences_go_to_tts_while_the_llm_is_still_streaming() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Hi");
    sim.ms(400);
    let a = sim.input(Input::LlmText("Sure, ".into()));
    assert!(speaks(&a).is_empty());
    let a = sim.input(Input::LlmText("I can help. What".into()));
    assert_eq!(
        a,
        vec![
            Action::OpenTts {
                language: "en".into()
            },
            Action::Speak {
                sentence: 0,
                text: "Sure, I can help.".into()
            }
        ]
    );
    let a = sim.llm(&[" day?"]);
    assert_eq!(speaks(&a), vec!["What day?"]);
    assert!(a.contains(&Action::FinishTts));
    assert_eq!(
        sim.c.history().last().unwrap(),
        &ChatMessage::assistant("Sure, I can help. What day?")
    );
}

#[test]
fn barge_in_clears_playout_cancels_and_keeps_only_what_was_heard() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Tell me about the menu");
    sim.ms(400);
    sim.input(Input::LlmText(
        "We serve pasta every day. Our pizza is baked in a wood oven and the ".into(),
    ));
    let start = sim.written;
    sim.tts(0, 1000);
    sim.input(Input::PlayoutStarted);
    // The first sentence played, the LLM is still streaming the second.
    sim.played_to(start + 16_000);
    let a = sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(300),
    });
    assert_eq!(
        a,
        vec![Action::ClearPlayout, Action::CancelLlm, Action::CancelTts]
    );
    assert!(!sim.c.replying());
    assert_eq!(
        sim.c.history().last().unwrap(),
        &ChatMessage::assistant("We serve pasta every day.")
    );
    // The next request carries only the heard part.
    sim.input(Input::Transcript {
        text: "Do you have vegan options?".into(),
        is_final: true,
        speech_final: true,
        language: None,
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    let req = llm_request(&sim.ms(400)).unwrap();
    let n = req.messages.len();
    assert_eq!(req.messages[n - 2].content, "We serve pasta every day.");
    assert_eq!(req.messages[n - 1].content, "Do you have vegan options?");
}

#[test]
fn barge_in_in_the_middle_of_a_sentence_keeps_the_heard_words() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Hours?");
    sim.ms(400);
    let start = sim.written;
    sim.llm(&["We open at nine and close at ten every day."]);
    sim.tts(0, 2000);
    sim.input(Input::PlayoutStarted);
    // Half of the sentence's 2 s heard: 5 of its 10 words.
    sim.played_to(start + 16_000);
    let a = sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(260),
    });
    assert_eq!(a, vec![Action::ClearPlayout, Action::CancelTts]);
    assert_eq!(
        sim.c.history().last().unwrap().content,
        "We open at nine and"
    );
}

#[test]
fn short_speech_does_not_interrupt_long_speech_does() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Hours?");
    sim.ms(400);
    sim.llm(&["We open at nine."]);
    sim.tts(0, 2000);
    sim.input(Input::PlayoutStarted);
    sim.played_to(sim.written - 16_000);
    // A cough: 100 ms of speech at the decision, ends before the minimum.
    let a = sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(100),
    });
    assert!(a.is_empty());
    sim.ms(50);
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(0),
    });
    assert!(!sim.ms(500).contains(&Action::ClearPlayout));
    assert!(sim.c.replying());
    // Real speech: interrupts once it has lasted the minimum.
    sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(100),
    });
    let a = sim.ms(149);
    assert!(a.is_empty());
    let a = sim.ms(1);
    assert_eq!(a.first(), Some(&Action::ClearPlayout));
}

#[test]
fn an_uninterruptible_agent_keeps_talking() {
    let mut s = settings();
    s.interruptible = false;
    let mut sim = Sim::greeted(s);
    sim.caller_says("Hours?");
    sim.ms(400);
    sim.llm(&["We open at nine."]);
    sim.tts(0, 2000);
    sim.input(Input::PlayoutStarted);
    sim.played_to(sim.written - 16_000);
    let a = sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(600),
    });
    assert!(a.is_empty());
    assert!(sim.c.replying());
}

#[test]
fn talking_on_before_the_reply_is_heard_takes_the_turn_back() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("I want to book");
    sim.ms(400);
    assert!(sim.c.replying());
    // The caller goes on before any reply audio reached them.
    let a = sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(250),
    });
    assert_eq!(a, vec![Action::CancelLlm]);
    sim.input(Input::Transcript {
        text: "a table for two".into(),
        is_final: true,
        speech_final: true,
        language: None,
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    let req = llm_request(&sim.ms(400)).unwrap();
    assert_eq!(
        req.messages.last().unwrap().content,
        "I want to book a table for two"
    );
    let users = req.messages.iter().filter(|m| m.role == Role::User).count();
    assert_eq!(users, 1);
}

#[test]
fn end_call_hangs_up_after_the_goodbye_plays() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("That's all, thanks");
    sim.ms(400);
    sim.input(Input::LlmText("Goodbye, have a nice day.".into()));
    sim.input(Input::LlmToolCall(ToolCall {
        id: "c1".into(),
        name: END_CALL.into(),
        arguments: "{}".into(),
    }));
    let a = sim.input(Input::LlmDone);
    assert!(llm_request(&a).is_none(), "no further round after end_call");
    assert!(a.contains(&Action::FinishTts));
    sim.tts(0, 1500);
    // Caller speech no longer interrupts the goodbye.
    assert!(sim
        .input(Input::SpeechStart {
            lasted: Duration::from_millis(400)
        })
        .is_empty());
    sim.input(Input::SpeechEnd {
        ago: Duration::ZERO,
    });
    let a = sim.play_all();
    assert!(a.contains(&Action::Hangup), "{a:?}");
}

#[test]
fn end_call_without_words_says_the_goodbye() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("bye");
    sim.ms(400);
    sim.input(Input::LlmToolCall(ToolCall {
        id: "c1".into(),
        name: END_CALL.into(),
        arguments: "{}".into(),
    }));
    let a = sim.input(Input::LlmDone);
    assert_eq!(speaks(&a), vec!["Goodbye!"]);
}

#[test]
fn http_tool_results_go_back_to_the_llm() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Book me for Friday");
    sim.ms(400);
    sim.input(Input::LlmText("Let me check.".into()));
    let call = ToolCall {
        id: "call_7".into(),
        name: "book".into(),
        arguments: r#"{"day":"friday"}"#.into(),
    };
    sim.input(Input::LlmToolCall(call.clone()));
    let a = sim.input(Input::LlmDone);
    assert!(a.contains(&Action::RunTool(call.clone())));
    assert_eq!(speaks(&a), vec!["Let me check."]);
    assert!(llm_request(&a).is_none());
    let a = sim.input(Input::ToolResult {
        id: "call_7".into(),
        content: r#"{"ok":true,"time":"19:00"}"#.into(),
    });
    let req = llm_request(&a).expect("second round");
    let n = req.messages.len();
    assert_eq!(req.messages[n - 2].role, Role::Assistant);
    assert_eq!(req.messages[n - 2].tool_calls, vec![call]);
    assert_eq!(req.messages[n - 1].role, Role::Tool);
    assert_eq!(req.messages[n - 1].tool_call_id.as_deref(), Some("call_7"));
    // The second round's sentences continue the same TTS turn.
    let a = sim.llm(&["You're booked at seven."]);
    assert_eq!(
        a,
        vec![
            Action::Speak {
                sentence: 1,
                text: "You're booked at seven.".into()
            },
            Action::FinishTts
        ]
    );
}

#[test]
fn send_dtmf_tool_sends_tones_and_continues() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Press one for me");
    sim.ms(400);
    sim.input(Input::LlmToolCall(ToolCall {
        id: "d".into(),
        name: SEND_DTMF.into(),
        arguments: r#"{"digits":"1#x"}"#.into(),
    }));
    let a = sim.input(Input::LlmDone);
    assert!(a.contains(&Action::SendDtmf("1#".into())));
    assert!(llm_request(&a).is_some(), "the result goes straight back");
}

#[test]
fn dtmf_digits_reach_the_llm_as_user_input() {
    let mut sim = Sim::greeted(settings());
    sim.input(Input::Dtmf('4'));
    sim.ms(500);
    sim.input(Input::Dtmf('2'));
    assert!(llm_request(&sim.ms(1400)).is_none());
    let req = llm_request(&sim.ms(200)).expect("after the inter-digit gap");
    assert_eq!(
        req.messages.last().unwrap().content,
        "[The caller pressed the telephone keys: 42]"
    );
    // '#' ends the entry at once.
    let mut sim = Sim::greeted(settings());
    sim.input(Input::Dtmf('7'));
    let a = sim.input(Input::Dtmf('#'));
    assert!(llm_request(&a).is_some());
}

#[test]
fn idle_caller_gets_a_prompt_then_a_goodbye_and_a_hang_up() {
    let mut sim = Sim::greeted(settings());
    let a = sim.ms(9_999);
    assert!(a.is_empty());
    let a = sim.ms(1);
    assert_eq!(speaks(&a), vec!["Are you still there?"]);
    sim.tts(0, 1000);
    sim.play_all();
    let a = sim.ms(19_999);
    assert!(a.is_empty());
    let a = sim.ms(1);
    assert_eq!(speaks(&a), vec!["Goodbye!"]);
    sim.tts(0, 500);
    let a = sim.play_all();
    assert!(a.contains(&Action::Hangup));
    // Nothing after the hang-up.
    assert!(sim.ms(60_000).is_empty());
}

#[test]
fn speech_resets_the_idle_clock() {
    let mut sim = Sim::greeted(settings());
    sim.ms(8_000);
    sim.caller_says("hello?");
    sim.ms(400);
    sim.llm(&["Hi!"]);
    sim.tts(0, 500);
    sim.play_all();
    assert!(speaks(&sim.ms(9_000)).is_empty());
    assert_eq!(speaks(&sim.ms(1_000)), vec!["Are you still there?"]);
}

#[test]
fn a_provider_failure_speaks_the_fallback_and_stops() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Hi");
    sim.ms(400);
    sim.input(Input::LlmText("Hel".into()));
    let a = sim.input(Input::ProviderFailed {
        what: "llm: HTTP 500".into(),
    });
    assert_eq!(
        a,
        vec![
            Action::CancelLlm,
            Action::SpeakFallback("Sorry, technical trouble.".into())
        ]
    );
    assert!(sim.input(Input::Dtmf('1')).is_empty());
    assert!(sim.ms(60_000).is_empty());
}

#[test]
fn auto_language_follows_the_caller() {
    let mut s = settings();
    s.language = "auto".into();
    let mut sim = Sim::greeted(s);
    assert!(sim.c.history()[0]
        .content
        .contains("language the caller speaks"));
    sim.input(Input::SpeechStart {
        lasted: Duration::from_millis(250),
    });
    sim.input(Input::Transcript {
        text: "Hola, quiero reservar".into(),
        is_final: true,
        speech_final: true,
        language: Some("es".into()),
    });
    sim.input(Input::SpeechEnd {
        ago: Duration::from_millis(100),
    });
    sim.ms(400);
    assert_eq!(sim.c.language(), "es");
    let a = sim.llm(&["¡Claro! ¿Para cuándo?"]);
    assert_eq!(
        a[0],
        Action::OpenTts {
            language: "es".into()
        }
    );
    // A fixed language is not switched.
    let mut sim = Sim::greeted(settings());
    sim.input(Input::Transcript {
        text: "Olá".into(),
        is_final: true,
        speech_final: true,
        language: Some("pt".into()),
    });
    assert_eq!(sim.c.language(), "en");
}

#[test]
fn each_answered_turn_reports_its_latency_marks() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Hi");
    sim.ms(400);
    sim.ms(5);
    sim.input(Input::LlmText("Hello!".into()));
    sim.ms(5);
    sim.input(Input::LlmDone);
    sim.ms(50);
    sim.tts(0, 500);
    sim.ms(10);
    let a = sim.input(Input::PlayoutStarted);
    let times = a
        .iter()
        .find_map(|a| match a {
            Action::TurnCompleted(t) => Some(t.clone()),
            _ => None,
        })
        .expect("reported at the first packet");
    assert_eq!(times.stages().len(), 7);
    // Speech ended 100 ms before the VAD said so, the turn ended 300 ms after the speech.
    assert_eq!(
        times.turn_end.unwrap() - times.speech_end.unwrap(),
        Duration::from_millis(300)
    );
    assert_eq!(times.engine_added(), Some(Duration::from_millis(10)));
    // Reported once.
    assert!(sim
        .played_to(sim.written)
        .iter()
        .all(|a| !matches!(a, Action::TurnCompleted(_))));
}

#[test]
fn a_remembered_caller_is_greeted_by_the_llm_with_the_memory_in_its_prompt() {
    let mut s = settings();
    s.system_prompt = "You are a test agent.\n\nWhat you remember: they asked about cakes.".into();
    s.greet_with_llm = true;
    let mut sim = Sim::new(s);
    let a = sim.input(Input::Answered);
    assert!(speaks(&a).is_empty(), "no fixed greeting: {a:?}");
    let req = llm_request(&a).expect("the greeting is asked of the LLM");
    assert!(req.messages[0].content.contains("they asked about cakes"));
    assert_eq!(req.messages.last().unwrap().content, GREET_KNOWN);
    let a = sim.llm(&["Hi again! Still thinking about that cake?"]);
    assert_eq!(
        speaks(&a).join(" "),
        "Hi again! Still thinking about that cake?"
    );
}

#[test]
fn send_sms_is_offered_only_when_the_caller_can_be_texted_and_runs_as_a_tool() {
    let mut sim = Sim::greeted(settings());
    sim.caller_says("Text me the address");
    let a = sim.ms(400);
    let req = llm_request(&a).unwrap();
    assert!(!req.tools.iter().any(|t| t.name == SEND_SMS));

    let mut s = settings();
    s.send_sms = true;
    let mut sim = Sim::greeted(s);
    sim.caller_says("Text me the address");
    let a = sim.ms(400);
    let req = llm_request(&a).unwrap();
    assert!(req.tools.iter().any(|t| t.name == SEND_SMS));
    let call = ToolCall {
        id: "call_9".into(),
        name: SEND_SMS.into(),
        arguments: r#"{"body":"12 Main St."}"#.into(),
    };
    sim.input(Input::LlmToolCall(call.clone()));
    let a = sim.input(Input::LlmDone);
    assert!(a.contains(&Action::RunTool(call)), "{a:?}");
    let a = sim.input(Input::ToolResult {
        id: "call_9".into(),
        content: "Sent.".into(),
    });
    assert!(llm_request(&a).is_some(), "the model is told and goes on");
}
