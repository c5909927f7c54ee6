//! The TTS providers against fakes that speak the vendors' wire protocols on 127.0.0.1
//! (Deepgram Aura, OpenAI `/audio/speech`, ElevenLabs `stream-input`), and against the real
//! espeak-ng.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parley::config::agent::{Secret, TtsConfig, TtsKind};
use parley::metrics::Histogram;
use parley::providers::tts::{Tts, TtsEvent, TtsTurn};
use parley::providers::{ProviderError, Ttfb};
use support::fakes::tts_deepgram::{FakeDeepgramTts, HttpFault};
use support::fakes::tts_elevenlabs::{FakeElevenLabsTts, WsFault};
use support::fakes::tts_openai::FakeOpenAiTts;

/// Longest a whole turn may take against a fake (they answer at once unless told not to).
const TURN_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers

fn config(provider: TtsKind, base_url: &str, key: Option<&str>) -> TtsConfig {
    TtsConfig {
        provider,
        base_url: Some(base_url.to_string()),
        api_key: key.map(Secret::new),
        ..TtsConfig::default()
    }
}

fn ttfb() -> (Arc<Histogram>, Ttfb) {
    let h = Arc::new(Histogram::new());
    (h.clone(), Ttfb::new(h))
}

/// Speaks `sentences` in one turn, finishes it, and returns every event until it ends.
async fn speak_all(tts: &Tts, language: &str, sentences: &[&str]) -> Vec<TtsEvent> {
    let mut turn = tts.open_turn(language);
    for (i, s) in sentences.iter().enumerate() {
        assert_eq!(turn.speak(*s), i);
    }
    turn.finish();
    drain(&mut turn).await
}

async fn drain(turn: &mut TtsTurn) -> Vec<TtsEvent> {
    tokio::time::timeout(TURN_DEADLINE, async {
        let mut events = Vec::new();
        while let Some(e) = turn.next_event().await {
            events.push(e);
        }
        events
    })
    .await
    .expect("the turn ends within the deadline")
}

/// A turn's events, checked for order: audio of sentence `s` only after `s-1` is done,
/// `SentenceDone` in order, nothing after an error.
#[derive(Debug, Default)]
struct Spoken {
    audio: Vec<Vec<i16>>,
    done: Vec<usize>,
    error: Option<ProviderError>,
}

fn spoken(events: &[TtsEvent]) -> Spoken {
    let mut s = Spoken::default();
    for (i, e) in events.iter().enumerate() {
        assert!(s.error.is_none(), "event {i} after the error: {e:?}");
        match e {
            TtsEvent::Audio { sentence, pcm } => {
                assert_eq!(*sentence, s.done.len(), "audio out of order at event {i}");
                assert!(!pcm.is_empty(), "empty audio event {i}");
                if s.audio.len() <= *sentence {
                    s.audio.resize(sentence + 1, Vec::new());
                }
                s.audio[*sentence].extend_from_slice(pcm);
            }
            TtsEvent::SentenceDone { sentence } => {
                assert_eq!(
                    *sentence,
                    s.done.len(),
                    "SentenceDone out of order at event {i}"
                );
                s.done.push(*sentence);
                if s.audio.len() <= *sentence {
                    s.audio.resize(sentence + 1, Vec::new());
                }
            }
            TtsEvent::Error(err) => s.error = Some(err.clone()),
        }
    }
    s
}

/// The frequency of a tone, from its zero crossings.
fn frequency(pcm: &[i16], rate: f64) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (pcm.len() as f64 / rate)
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

/// Samples at 16 kHz of the fakes' speech for `text`.
fn samples_16k(text: &str) -> usize {
    text.chars().count() * 16 * support::fakes::tts_deepgram::MS_PER_CHAR
}

/// Polls `f` until it holds, or fails after `what` did not happen within 10 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens a turn on a long sentence, waits for its first audio, and drops the turn.
async fn drop_turn_mid_sentence(tts: &Tts) {
    let mut turn = tts.open_turn("en");
    turn.speak("This sentence is long enough that its audio takes many seconds to stream in.");
    let first = tokio::time::timeout(TURN_DEADLINE, turn.next_event())
        .await
        .expect("audio within the deadline");
    assert!(
        matches!(first, Some(TtsEvent::Audio { sentence: 0, .. })),
        "{first:?}"
    );
    drop(turn);
}

// ---------------------------------------------------------------------------------------------
// Deepgram Aura

#[tokio::test]
async fn deepgram_speaks_sentences_in_order_at_16k() {
    let fake = FakeDeepgramTts::start();
    fake.require_key("dg-key");
    let (hist, ttfb) = ttfb();
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), Some("dg-key")),
        ttfb,
    );
    let sentences = ["Hello there.", "How are you today?"];
    let s = spoken(&speak_all(&tts, "en", &sentences).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    // 16 kHz in, 16 kHz out: the audio is exactly what the server sent.
    for (i, text) in sentences.iter().enumerate() {
        assert_eq!(
            s.audio[i],
            FakeDeepgramTts::expected_pcm(text, i),
            "sentence {i}"
        );
        assert_eq!(s.audio[i].len(), samples_16k(text));
    }
    assert_eq!(hist.count(), 2, "one TTFB per sentence");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for (r, text) in requests.iter().zip(sentences) {
        assert_eq!(r.path, "/v1/speak");
        assert_eq!(r.query("model"), Some("aura-2-thalia-en"));
        assert_eq!(r.query("encoding"), Some("linear16"));
        assert_eq!(r.query("sample_rate"), Some("16000"));
        assert_eq!(r.query("container"), Some("none"));
        assert_eq!(r.header("authorization"), Some("Token dg-key"));
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
        assert_eq!(r.body, serde_json::json!({ "text": text }));
    }
}

#[tokio::test]
async fn deepgram_voice_follows_the_language() {
    let fake = FakeDeepgramTts::start();
    let mut c = config(TtsKind::Deepgram, &fake.base_url(), None);
    let tts = Tts::from_config(&c, Ttfb::none());
    speak_all(&tts, "es", &["Hola."]).await;
    c.voices.insert("pt".into(), "aura-custom-pt".into());
    let tts = Tts::from_config(&c, Ttfb::none());
    speak_all(&tts, "pt", &["Olá."]).await;
    speak_all(&tts, "en", &["Hi."]).await;
    c.voice = Some("aura-2-zeus-en".into());
    let tts = Tts::from_config(&c, Ttfb::none());
    speak_all(&tts, "en", &["Hi."]).await;

    let models: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| r.query("model").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        models,
        [
            "aura-2-celeste-es",
            "aura-custom-pt",
            "aura-2-thalia-en",
            "aura-2-zeus-en"
        ]
    );
    assert_eq!(
        fake.requests()[0].header("authorization"),
        None,
        "no key, no header"
    );
}

#[tokio::test]
async fn deepgram_retries_a_503_then_succeeds() {
    let fake = FakeDeepgramTts::start();
    fake.push_fault(HttpFault::status(503));
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Try again."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    // Request 1 answered, so the audio is its tone.
    assert_eq!(s.audio[0], FakeDeepgramTts::expected_pcm("Try again.", 1));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn deepgram_does_not_retry_a_401() {
    let fake = FakeDeepgramTts::start();
    fake.require_key("right");
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), Some("wrong")),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Hello.", "Again."]).await);
    match s.error {
        Some(ProviderError::Status {
            provider: "deepgram",
            status: 401,
            ref body,
        }) => assert!(body.contains("INVALID_AUTH"), "{body}"),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(s.done.is_empty());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn deepgram_slow_first_byte_times_out_after_retries() {
    let fake = FakeDeepgramTts::start();
    for _ in 0..3 {
        fake.push_fault(HttpFault::slow_first_byte(Duration::from_secs(5)));
    }
    let mut c = config(TtsKind::Deepgram, &fake.base_url(), None);
    c.timeout_ms = 200;
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "en", &["Slow."]).await);
    assert_eq!(
        s.error,
        Some(ProviderError::Timeout {
            provider: "deepgram",
            ms: 200
        })
    );
    eventually("three attempts", || fake.requests().len() == 3).await;
}

#[tokio::test]
async fn deepgram_disconnect_mid_stream_is_an_error() {
    let fake = FakeDeepgramTts::start();
    fake.push_fault(HttpFault::disconnect_after(5_000));
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(
        &speak_all(
            &tts,
            "en",
            &["A sentence long enough to be cut in the middle."],
        )
        .await,
    );
    assert!(
        matches!(
            s.error,
            Some(ProviderError::Disconnected {
                provider: "deepgram",
                ..
            })
        ),
        "{:?}",
        s.error
    );
    assert!(
        s.audio.first().is_none_or(|a| a.len() <= 2_500),
        "at most what was sent"
    );
    assert!(s.done.is_empty());
    assert_eq!(fake.requests().len(), 1, "audio was heard: no retry");
}

#[tokio::test]
async fn deepgram_dropping_the_turn_cancels_the_request() {
    let fake = FakeDeepgramTts::start();
    fake.push_fault(HttpFault::slow_chunks(Duration::from_millis(20)));
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), None),
        Ttfb::none(),
    );
    drop_turn_mid_sentence(&tts).await;
    eventually("the fake sees the response abandoned", || {
        fake.stats().aborted == 1
    })
    .await;
    assert_eq!(fake.stats().completed, 0);
}

#[tokio::test]
async fn deepgram_blank_sentences_complete_without_a_request() {
    let fake = FakeDeepgramTts::start();
    let tts = Tts::from_config(
        &config(TtsKind::Deepgram, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["  ", "Yes."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    assert!(s.audio[0].is_empty());
    assert_eq!(fake.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible /audio/speech

#[tokio::test]
async fn openai_speaks_sentences_in_order_resampled_to_16k() {
    let fake = FakeOpenAiTts::start();
    fake.require_key("sk-test");
    let (hist, ttfb) = ttfb();
    let tts = Tts::from_config(
        &config(TtsKind::OpenAi, &fake.base_url(), Some("sk-test")),
        ttfb,
    );
    let sentences = ["Good morning.", "The weather is fine."];
    let s = spoken(&speak_all(&tts, "en", &sentences).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    for (i, text) in sentences.iter().enumerate() {
        let want = samples_16k(text) as i64;
        let got = s.audio[i].len() as i64;
        // 24 kHz → 16 kHz keeps the duration, to within one 20 ms frame.
        assert!(
            (got - want).abs() <= 320,
            "sentence {i}: {got} samples, want {want}"
        );
        let hz = frequency(&s.audio[i], 16_000.0);
        let expect = support::fakes::tts_deepgram::tone_hz(i);
        assert!(
            (hz - expect).abs() < expect * 0.05,
            "sentence {i}: {hz} Hz, want {expect}"
        );
    }
    assert_eq!(hist.count(), 2);

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for (r, text) in requests.iter().zip(sentences) {
        assert_eq!(r.path, "/v1/audio/speech");
        assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
        assert_eq!(
            r.body,
            serde_json::json!({
                "model": "gpt-4o-mini-tts",
                "input": text,
                "voice": "alloy",
                "response_format": "pcm",
            })
        );
    }
}

#[tokio::test]
async fn openai_uses_the_configured_model_and_voices() {
    let fake = FakeOpenAiTts::start();
    let mut c = config(TtsKind::OpenAi, &format!("{}/", fake.base_url()), None);
    c.model = Some("tts-1".into());
    c.voice = Some("nova".into());
    c.voices.insert("es".into(), "coral".into());
    let tts = Tts::from_config(&c, Ttfb::none());
    speak_all(&tts, "en", &["One."]).await;
    speak_all(&tts, "es", &["Dos."]).await;
    let r = fake.requests();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].body["model"], "tts-1");
    assert_eq!(r[0].body["voice"], "nova");
    assert_eq!(r[1].body["voice"], "coral");
    assert_eq!(r[0].header("authorization"), None);
}

#[tokio::test]
async fn openai_retries_a_503_but_not_a_401() {
    let fake = FakeOpenAiTts::start();
    fake.push_fault(HttpFault::status(503));
    let tts = Tts::from_config(
        &config(TtsKind::OpenAi, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Once more."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    assert_eq!(fake.requests().len(), 2);

    fake.push_fault(HttpFault::status(401));
    let s = spoken(&speak_all(&tts, "en", &["Denied."]).await);
    match s.error {
        Some(ProviderError::Status {
            provider: "openai",
            status: 401,
            ref body,
        }) => assert!(body.contains("invalid_api_key"), "{body}"),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn openai_slow_first_byte_times_out_after_retries() {
    let fake = FakeOpenAiTts::start();
    for _ in 0..3 {
        fake.push_fault(HttpFault::slow_first_byte(Duration::from_secs(5)));
    }
    let mut c = config(TtsKind::OpenAi, &fake.base_url(), None);
    c.timeout_ms = 200;
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "en", &["Slow."]).await);
    assert_eq!(
        s.error,
        Some(ProviderError::Timeout {
            provider: "openai",
            ms: 200
        })
    );
    eventually("three attempts", || fake.requests().len() == 3).await;
}

#[tokio::test]
async fn openai_one_slow_answer_is_retried() {
    let fake = FakeOpenAiTts::start();
    fake.push_fault(HttpFault::slow_first_byte(Duration::from_secs(5)));
    let mut c = config(TtsKind::OpenAi, &fake.base_url(), None);
    c.timeout_ms = 300;
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "en", &["Eventually."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn openai_disconnect_mid_stream_is_an_error() {
    let fake = FakeOpenAiTts::start();
    fake.push_fault(HttpFault::disconnect_after(10_001));
    let tts = Tts::from_config(
        &config(TtsKind::OpenAi, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(
        &speak_all(
            &tts,
            "en",
            &["A sentence long enough to be cut in the middle."],
        )
        .await,
    );
    assert!(
        matches!(
            s.error,
            Some(ProviderError::Disconnected {
                provider: "openai",
                ..
            })
        ),
        "{:?}",
        s.error
    );
    assert!(s.done.is_empty());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn openai_dropping_the_turn_cancels_the_request() {
    let fake = FakeOpenAiTts::start();
    fake.push_fault(HttpFault::slow_chunks(Duration::from_millis(20)));
    let tts = Tts::from_config(
        &config(TtsKind::OpenAi, &fake.base_url(), None),
        Ttfb::none(),
    );
    drop_turn_mid_sentence(&tts).await;
    eventually("the fake sees the response abandoned", || {
        fake.stats().aborted == 1
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// ElevenLabs stream-input

fn repeat(pcm: &[i16], times: usize) -> Vec<i16> {
    pcm.iter()
        .copied()
        .cycle()
        .take(pcm.len() * times)
        .collect()
}

#[tokio::test]
async fn elevenlabs_attributes_straddling_audio_by_alignment() {
    let fake = FakeElevenLabsTts::start();
    fake.require_key("el-key");
    // Messages of 5 characters, partial ones held back: "One t", "wo. T", "hree.", " ".
    fake.set_chars_per_message(5);
    fake.set_batching(true);
    let (hist, ttfb) = ttfb();
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), Some("el-key")),
        ttfb,
    );
    let s = spoken(&speak_all(&tts, "en", &["One two.", "Three."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    // "wo. T" starts in sentence 0, so its "T" (sentence 1's tone) is sentence 0's audio.
    let c0 = FakeElevenLabsTts::char_pcm(0);
    let c1 = FakeElevenLabsTts::char_pcm(1);
    let mut want0 = repeat(&c0, 9);
    want0.extend_from_slice(&c1);
    assert_eq!(s.audio[0].len(), want0.len());
    assert!(
        s.audio[0] == want0,
        "sentence 0 is 9 characters of its tone and 1 of the next"
    );
    // "hree." and the trailing " " are sentence 1's.
    assert!(
        s.audio[1] == repeat(&c1, 6),
        "sentence 1: {} samples",
        s.audio[1].len()
    );
    assert_eq!(hist.count(), 2, "one TTFB per sentence");

    let conns = fake.connections();
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!(c.voice_id, "JBFqnCBsd6RMkjVDRZzb");
    assert_eq!(c.query("model_id"), Some("eleven_flash_v2_5"));
    assert_eq!(c.query("output_format"), Some("pcm_16000"));
    assert_eq!(c.query("sync_alignment"), Some("true"));
    assert_eq!(c.query("language_code"), None);
    assert_eq!(c.header("xi-api-key"), Some("el-key"));
    assert_eq!(c.texts(), [" ", "One two. ", "Three. ", ""]);
    assert_eq!(c.messages[1]["flush"], true);
    assert_eq!(c.messages[2]["flush"], true);
    assert!(c.end_of_stream && !c.client_left_early);
    eventually("the connection closes", || fake.connections()[0].ended).await;
}

#[tokio::test]
async fn elevenlabs_flushes_each_sentence() {
    let fake = FakeElevenLabsTts::start();
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    let sentences = ["Hello there, caller.", "Goodbye."];
    let s = spoken(&speak_all(&tts, "en", &sentences).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    // Each flush voices the sentence and its trailing space, in its own tone.
    for (k, text) in sentences.iter().enumerate() {
        let chars = text.chars().count() + 1;
        assert!(
            s.audio[k] == repeat(&FakeElevenLabsTts::char_pcm(k), chars),
            "sentence {k}"
        );
    }
    assert_eq!(fake.connections()[0].header("xi-api-key"), None);
}

#[tokio::test]
async fn elevenlabs_voice_model_and_language_code() {
    let fake = FakeElevenLabsTts::start();
    let mut c = config(
        TtsKind::ElevenLabs,
        &fake.base_url().replace("ws://", "http://"),
        None,
    );
    c.model = Some("eleven_turbo_v2_5".into());
    c.voices.insert("es".into(), "voice-es".into());
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "es", &["Hola."]).await);
    assert_eq!(s.error, None);
    let conn = &fake.connections()[0];
    assert_eq!(conn.voice_id, "voice-es");
    assert_eq!(conn.query("model_id"), Some("eleven_turbo_v2_5"));
    assert_eq!(conn.query("language_code"), Some("es"));
}

#[tokio::test]
async fn elevenlabs_retries_a_refused_handshake_then_succeeds() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        status: Some(503),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Second time lucky."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    let conns = fake.connections();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].refused, Some(503));
    assert_eq!(conns[1].texts(), [" ", "Second time lucky. ", ""]);
}

#[tokio::test]
async fn elevenlabs_does_not_retry_a_401() {
    let fake = FakeElevenLabsTts::start();
    fake.require_key("right");
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), Some("wrong")),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Hello."]).await);
    match s.error {
        Some(ProviderError::Status {
            provider: "elevenlabs",
            status: 401,
            ..
        }) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
    assert_eq!(fake.connections().len(), 1);
}

#[tokio::test]
async fn elevenlabs_slow_first_audio_times_out_after_retries() {
    let fake = FakeElevenLabsTts::start();
    for _ in 0..3 {
        fake.push_fault(WsFault {
            first_audio_delay: Duration::from_secs(5),
            ..WsFault::default()
        });
    }
    let mut c = config(TtsKind::ElevenLabs, &fake.base_url(), None);
    c.timeout_ms = 300;
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "en", &["Anyone there?"]).await);
    assert_eq!(
        s.error,
        Some(ProviderError::Timeout {
            provider: "elevenlabs",
            ms: 300
        })
    );
    eventually("three connections", || fake.connections().len() == 3).await;
    // Each new connection was sent the pending sentence again.
    eventually("the sentence sent on each", || {
        fake.connections()
            .iter()
            .all(|c| c.texts().iter().any(|t| t == "Anyone there? "))
    })
    .await;
}

#[tokio::test]
async fn elevenlabs_disconnect_mid_stream_is_an_error() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        disconnect_after_messages: Some(1),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["This will be cut short."]).await);
    assert!(
        matches!(
            s.error,
            Some(ProviderError::Disconnected {
                provider: "elevenlabs",
                ..
            })
        ),
        "{:?}",
        s.error
    );
    assert_eq!(
        s.audio[0].len(),
        5 * support::fakes::tts_elevenlabs::SAMPLES_PER_CHAR
    );
    assert!(s.done.is_empty());
    assert_eq!(fake.connections().len(), 1, "audio was heard: no retry");
}

#[tokio::test]
async fn elevenlabs_error_message_is_an_error() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        error_after_messages: Some(0),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Fails."]).await);
    match &s.error {
        Some(e @ ProviderError::Disconnected { .. }) => {
            assert!(e.to_string().contains("internal_error"), "{e}")
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
    assert_eq!(fake.connections().len(), 1);
}

#[tokio::test]
async fn elevenlabs_malformed_message_is_an_error() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        malformed_after_messages: Some(1),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    let s = spoken(&speak_all(&tts, "en", &["Garbled in the middle."]).await);
    assert!(
        matches!(
            s.error,
            Some(ProviderError::Protocol {
                provider: "elevenlabs",
                ..
            })
        ),
        "{:?}",
        s.error
    );
}

#[tokio::test]
async fn elevenlabs_reconnects_after_an_inactivity_close() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        inactivity_close: Some(Duration::from_millis(100)),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    // The LLM is slow: the server closes the idle connection before the first sentence.
    let mut turn = tts.open_turn("en");
    eventually("the server closes the idle connection", || {
        fake.connections().first().is_some_and(|c| c.ended)
    })
    .await;
    turn.speak("Sorry for the wait.");
    turn.finish();
    let s = spoken(&drain(&mut turn).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    assert_eq!(s.audio[0].len(), samples_16k("Sorry for the wait. "));
    let conns = fake.connections();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].texts(), [" "]);
    assert_eq!(conns[1].texts(), [" ", "Sorry for the wait. ", ""]);
}

#[tokio::test]
async fn elevenlabs_dropping_the_turn_closes_the_connection() {
    let fake = FakeElevenLabsTts::start();
    fake.push_fault(WsFault {
        message_delay: Duration::from_millis(50),
        ..WsFault::default()
    });
    let tts = Tts::from_config(
        &config(TtsKind::ElevenLabs, &fake.base_url(), None),
        Ttfb::none(),
    );
    drop_turn_mid_sentence(&tts).await;
    eventually("the fake sees the client leave", || {
        fake.connections()
            .first()
            .is_some_and(|c| c.client_left_early)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// espeak-ng (real)

fn espeak_available(test: &str) -> bool {
    let ok = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    support::require(
        test,
        "espeak-ng is not installed (Debian package espeak-ng; scripts/setup.sh installs it)",
        ok,
    )
}

fn espeak() -> (Arc<Histogram>, Tts) {
    let (hist, ttfb) = ttfb();
    let c = TtsConfig {
        provider: TtsKind::Espeak,
        ..TtsConfig::default()
    };
    (hist, Tts::from_config(&c, ttfb))
}

/// Plausible speech at 16 kHz: audible, and between `min` and `max` seconds.
fn assert_speech(pcm: &[i16], min: f64, max: f64) {
    let seconds = pcm.len() as f64 / 16_000.0;
    assert!(seconds > min && seconds < max, "{seconds} s of audio");
    assert!(rms(pcm) > 300.0, "audible: rms {}", rms(pcm));
}

#[tokio::test]
async fn espeak_speaks_english_at_16k() {
    if !espeak_available("espeak_speaks_english_at_16k") {
        return;
    }
    let (hist, tts) = espeak();
    let s = spoken(&speak_all(&tts, "en", &["Hello, this is a test of the local voice."]).await);
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0]);
    assert_speech(&s.audio[0], 1.0, 6.0);
    assert_eq!(hist.count(), 1);
}

#[tokio::test]
async fn espeak_speaks_spanish() {
    if !espeak_available("espeak_speaks_spanish") {
        return;
    }
    let (_, tts) = espeak();
    let s = spoken(&speak_all(&tts, "es", &["Hola, esta es una prueba de la voz local."]).await);
    assert_eq!(s.error, None);
    assert_speech(&s.audio[0], 1.0, 6.0);
}

#[tokio::test]
async fn espeak_speaks_two_sentences_in_order() {
    if !espeak_available("espeak_speaks_two_sentences_in_order") {
        return;
    }
    let (hist, tts) = espeak();
    let s = spoken(
        &speak_all(
            &tts,
            "en",
            &["Yes.", "That is a much longer second sentence."],
        )
        .await,
    );
    assert_eq!(s.error, None);
    assert_eq!(s.done, vec![0, 1]);
    assert_speech(&s.audio[0], 0.2, 2.0);
    assert_speech(&s.audio[1], 1.0, 6.0);
    assert!(
        s.audio[1].len() > s.audio[0].len() * 2,
        "the longer one is longer"
    );
    assert_eq!(hist.count(), 2);
}

#[tokio::test]
async fn espeak_synthesizes_a_whole_prompt_and_reads_text_only_from_stdin() {
    if !espeak_available("espeak_synthesizes_a_whole_prompt_and_reads_text_only_from_stdin") {
        return;
    }
    let tts = parley::providers::tts::espeak::EspeakTts::new(&TtsConfig::default(), Ttfb::none());
    let pcm = tts.synthesize("Please hold the line.", "en").await.unwrap();
    assert_speech(&pcm, 0.5, 5.0);
    // Text that looks like an option is spoken, not obeyed.
    let pcm = tts.synthesize("--version", "en").await.unwrap();
    assert_speech(&pcm, 0.2, 5.0);
}

#[tokio::test]
async fn espeak_unknown_voice_is_an_error() {
    if !espeak_available("espeak_unknown_voice_is_an_error") {
        return;
    }
    let c = TtsConfig {
        provider: TtsKind::Espeak,
        voice: Some("zz-nonexistent".into()),
        ..TtsConfig::default()
    };
    let tts = Tts::from_config(&c, Ttfb::none());
    let s = spoken(&speak_all(&tts, "en", &["Hello."]).await);
    match &s.error {
        Some(
            e @ ProviderError::Local {
                provider: "espeak", ..
            },
        ) => {
            assert!(e.to_string().contains("zz-nonexistent"), "{e}")
        }
        other => panic!("expected a local error, got {other:?}"),
    }
}
