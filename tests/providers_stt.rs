//! The STT clients against local fakes that speak the vendors' protocols: Deepgram live
//! streaming (WebSocket) and OpenAI-compatible per-utterance transcription (multipart).

mod support;

use std::sync::Arc;
use std::time::Duration;

use parley::config::agent::{Secret, SttConfig, SttKind};
use parley::metrics::Histogram;
use parley::providers::stt::deepgram::DeepgramStt;
use parley::providers::stt::{Stt, SttEvent, SttInput, SttSession};
use parley::providers::{ProviderError, Ttfb};
use support::fakes::deepgram_stt::{silence, tone, DgConnection, FakeDeepgram};
use support::fakes::openai_llm::eventually;
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply, WavFormat};

/// Longest any one test waits for something that should happen at once.
const DEADLINE: Duration = Duration::from_secs(10);

/// Pushes audio as the agent does, in 20 ms frames.
fn feed(session: &mut SttSession, samples: &[i16]) {
    for frame in samples.chunks(320) {
        session.send(SttInput::Audio(frame.to_vec()));
    }
}

async fn next(session: &mut SttSession) -> SttEvent {
    match tokio::time::timeout(DEADLINE, session.next_event()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the session ended"),
        Err(_) => panic!("no event within {DEADLINE:?}"),
    }
}

/// Events until (and including) the first `Final`.
async fn until_final(session: &mut SttSession) -> Vec<SttEvent> {
    let mut events = Vec::new();
    loop {
        let e = next(session).await;
        let done = matches!(e, SttEvent::Final { .. } | SttEvent::Error(_));
        events.push(e);
        if done {
            return events;
        }
    }
}

fn final_event(text: &str, language: Option<&str>) -> SttEvent {
    SttEvent::Final {
        text: text.into(),
        speech_final: true,
        language: language.map(str::to_string),
    }
}

// ---------------------------------------------------------------------------------------------
// Deepgram

fn deepgram_config(base_url: String) -> SttConfig {
    SttConfig {
        provider: SttKind::Deepgram,
        base_url: Some(base_url),
        api_key: Some(Secret::new("dg-key-1")),
        model: None,
        endpointing_ms: 300,
        timeout_ms: 2_000,
    }
}

fn deepgram(fake: &FakeDeepgram) -> Stt {
    Stt::from_config(&deepgram_config(fake.base_url()), Ttfb::none()).unwrap()
}

/// One utterance as the agent would push it: 400 ms of speech, then silence long enough
/// for the fake's endpointing and UtteranceEnd.
fn utterance(session: &mut SttSession) {
    session.send(SttInput::SpeechStart);
    feed(session, &tone(400));
    feed(session, &silence(100));
    session.send(SttInput::SpeechEnd);
    feed(session, &silence(1_100));
}

#[tokio::test]
async fn deepgram_query_auth_audio_and_events() {
    let fake = FakeDeepgram::start();
    // An http:// base URL is used as ws://.
    let stt = Stt::from_config(&deepgram_config(fake.http_url()), Ttfb::none()).unwrap();
    assert_eq!(stt.name(), "deepgram");
    let mut session = stt.start("en");
    utterance(&mut session);

    assert_eq!(
        next(&mut session).await,
        SttEvent::Interim {
            text: "Hello".into()
        }
    );
    assert_eq!(
        next(&mut session).await,
        final_event("Hello there.", Some("en"))
    );
    assert_eq!(next(&mut session).await, SttEvent::UtteranceEnd);

    let s = fake.session(0).unwrap();
    assert_eq!(s.path, "/v1/listen");
    for (name, value) in [
        ("model", "nova-3"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("endpointing", "300"),
        ("utterance_end_ms", "1000"),
        ("vad_events", "true"),
        ("smart_format", "true"),
        ("language", "en"),
    ] {
        assert_eq!(s.param(name), Some(value), "query parameter {name}");
    }
    assert_eq!(s.header("authorization"), Some("Token dg-key-1"));
    let bytes = (400 + 100 + 1_100) * 16 * 2;
    assert!(
        eventually(DEADLINE, || fake.session(0).unwrap().audio_bytes == bytes).await,
        "audio bytes: {} of {bytes}",
        fake.session(0).unwrap().audio_bytes
    );
    assert_eq!(session.dropped(), 0);
}

#[tokio::test]
async fn deepgram_detected_languages_map_to_codes() {
    let fake = FakeDeepgram::start();
    fake.push_transcript("Hola, ¿qué tal?", Some("es"));
    fake.push_transcript("Obrigado.", Some("pt-BR"));
    fake.push_transcript("Hmm.", None);
    let mut session = deepgram(&fake).start("auto");
    for _ in 0..3 {
        utterance(&mut session);
    }
    let mut finals = Vec::new();
    while finals.len() < 3 {
        if let SttEvent::Final { text, language, .. } = next(&mut session).await {
            finals.push((text, language));
        }
    }
    assert_eq!(
        finals,
        vec![
            ("Hola, ¿qué tal?".to_string(), Some("es".to_string())),
            ("Obrigado.".to_string(), Some("pt".to_string())),
            ("Hmm.".to_string(), None),
        ]
    );
    assert_eq!(fake.session(0).unwrap().param("language"), Some("multi"));
}

#[tokio::test]
async fn deepgram_keepalive_when_idle_and_closestream_on_drop() {
    let fake = FakeDeepgram::start();
    let dg = DeepgramStt::new(&deepgram_config(fake.base_url()), Ttfb::none())
        .with_keepalive(Duration::from_millis(50));
    let session = Stt::Deepgram(dg).start("en");
    assert!(
        eventually(DEADLINE, || fake
            .session(0)
            .is_some_and(|s| s.count_type("KeepAlive") >= 2))
        .await,
        "no KeepAlive: {:?}",
        fake.session(0)
    );
    assert_eq!(fake.session(0).unwrap().audio_bytes, 0);
    drop(session);
    assert!(
        eventually(DEADLINE, || fake
            .session(0)
            .is_some_and(|s| s.count_type("CloseStream") == 1 && s.ended))
        .await,
        "no CloseStream: {:?}",
        fake.session(0)
    );
}

#[tokio::test]
async fn deepgram_unauthorized_upgrade_is_an_error_without_retry() {
    let fake = FakeDeepgram::start();
    fake.push_connection(DgConnection::unauthorized());
    let mut session = deepgram(&fake).start("en");
    match next(&mut session).await {
        SttEvent::Error(ProviderError::Status { status, body, .. }) => {
            assert_eq!(status, 401);
            assert!(body.contains("INVALID_AUTH"), "{body}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(tokio::time::timeout(DEADLINE, session.next_event())
        .await
        .unwrap()
        .is_none());
    assert_eq!(fake.session_count(), 1);
}

#[tokio::test]
async fn deepgram_connection_refused_is_an_error_after_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stt = Stt::from_config(
        &deepgram_config(format!("ws://127.0.0.1:{port}")),
        Ttfb::none(),
    )
    .unwrap();
    let mut session = stt.start("en");
    let event = next(&mut session).await;
    assert!(
        matches!(event, SttEvent::Error(ProviderError::Connect { .. })),
        "{event:?}"
    );
}

#[tokio::test]
async fn deepgram_reconnects_after_the_server_drops_the_connection() {
    let fake = FakeDeepgram::start();
    fake.push_connection(DgConnection::drop_after_audio(3_200));
    let mut session = deepgram(&fake).start("en");
    feed(&mut session, &tone(200));
    assert!(eventually(DEADLINE, || fake.session_count() == 2).await);
    assert!(fake.session(0).unwrap().ended);
    // Audio that reaches the session while it reconnects is dropped, so speak until an
    // utterance gets through the new connection.
    let mut got = None;
    for _ in 0..5 {
        utterance(&mut session);
        let wait = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match session.next_event().await {
                    Some(SttEvent::Final { text, .. }) => return Some(text),
                    Some(SttEvent::Error(e)) => panic!("{e}"),
                    Some(_) => {}
                    None => return None,
                }
            }
        });
        if let Ok(text) = wait.await {
            got = text;
            break;
        }
    }
    assert_eq!(got.as_deref(), Some("Hello there."));
    assert!(fake.session(1).unwrap().audio_bytes > 0);
}

#[tokio::test]
async fn deepgram_gives_up_when_reconnecting_fails() {
    let fake = FakeDeepgram::start();
    fake.push_connection(DgConnection::drop_after_audio(1_600));
    for _ in 0..3 {
        fake.push_connection(DgConnection::reject(503, "unavailable"));
    }
    let mut session = deepgram(&fake).start("en");
    feed(&mut session, &tone(100));
    loop {
        match next(&mut session).await {
            SttEvent::Error(ProviderError::Status { status: 503, .. }) => break,
            SttEvent::Error(e) => panic!("unexpected error {e}"),
            _ => {}
        }
    }
    assert_eq!(fake.session_count(), 4);
}

#[tokio::test]
async fn deepgram_ignores_frames_that_are_not_json() {
    let fake = FakeDeepgram::start();
    fake.push_connection(DgConnection::malformed_first());
    let mut session = deepgram(&fake).start("en");
    utterance(&mut session);
    let events = until_final(&mut session).await;
    assert_eq!(
        events.last(),
        Some(&final_event("Hello there.", Some("en")))
    );
    assert!(fake.session(0).unwrap().sent[0].contains("not JSON"));
}

#[tokio::test]
async fn deepgram_ttfb_from_speech_end_to_final() {
    let fake = FakeDeepgram::start();
    let histogram = Arc::new(Histogram::new());
    let stt = Stt::from_config(
        &deepgram_config(fake.base_url()),
        Ttfb::new(histogram.clone()),
    )
    .unwrap();
    let mut session = stt.start("en");
    utterance(&mut session);
    until_final(&mut session).await;
    assert_eq!(histogram.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible transcription

fn openai_config(fake: &FakeOpenAiStt) -> SttConfig {
    SttConfig {
        provider: SttKind::OpenAi,
        base_url: Some(fake.base_url()),
        api_key: Some(Secret::new("sk-stt-1")),
        model: None,
        endpointing_ms: 300,
        timeout_ms: 2_000,
    }
}

fn openai(fake: &FakeOpenAiStt) -> Stt {
    Stt::from_config(&openai_config(fake), Ttfb::none()).unwrap()
}

/// 300 ms of pre-roll at 16 kHz.
const PREROLL: usize = 4_800;

#[tokio::test]
async fn openai_uploads_each_utterance_with_preroll_as_wav() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::text("  Hola, ¿qué tal?  ", Some("spanish")));
    let stt = openai(&fake);
    assert_eq!(stt.name(), "openai");
    let mut session = stt.start("es");
    session.send(SttInput::Audio(vec![100; 16_000])); // before speech: only 300 ms kept
    session.send(SttInput::SpeechStart);
    feed(&mut session, &vec![1_000; 8_000]);
    session.send(SttInput::SpeechEnd);
    feed(&mut session, &vec![5; 3_200]); // after speech: not in this utterance

    assert_eq!(
        next(&mut session).await,
        final_event("Hola, ¿qué tal?", Some("es"))
    );
    assert_eq!(next(&mut session).await, SttEvent::UtteranceEnd);

    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    let u = &uploads[0];
    assert_eq!(u.path, "/v1/audio/transcriptions");
    assert_eq!(u.header("authorization"), Some("Bearer sk-stt-1"));
    assert!(u
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("multipart/form-data; boundary=")));
    assert_eq!(u.field("model"), Some("whisper-1"));
    assert_eq!(u.field("response_format"), Some("verbose_json"));
    assert_eq!(u.field("language"), Some("es"));
    assert_eq!(u.file_name.as_deref(), Some("utterance.wav"));
    assert_eq!(u.file_content_type.as_deref(), Some("audio/wav"));
    assert_eq!(
        u.wav,
        Some(Ok(WavFormat {
            format: 1,
            channels: 1,
            sample_rate: 16_000,
            bits: 16
        }))
    );
    assert_eq!(u.samples.len(), PREROLL + 8_000);
    assert!(u.samples[..PREROLL].iter().all(|&s| s == 100));
    assert!(u.samples[PREROLL..].iter().all(|&s| s == 1_000));
}

/// One utterance of `ms` of audio.
fn speak(session: &mut SttSession, ms: usize) {
    session.send(SttInput::SpeechStart);
    feed(session, &vec![1_000; ms * 16]);
    session.send(SttInput::SpeechEnd);
}

#[tokio::test]
async fn openai_detected_language_names_map_to_codes() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::text("Obrigado.", Some("portuguese")));
    fake.push(SttReply::text("Thanks.", Some("en")));
    fake.push(SttReply::text("Hmm.", None));
    fake.push(SttReply::raw(r#"{"text":" Plain json. "}"#));
    let mut session = openai(&fake).start("auto");
    for _ in 0..4 {
        speak(&mut session, 200);
    }
    let mut finals = Vec::new();
    while finals.len() < 4 {
        if let SttEvent::Final { text, language, .. } = next(&mut session).await {
            finals.push((text, language));
        }
    }
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        finals,
        vec![
            ("Obrigado.".to_string(), s("pt")),
            ("Thanks.".to_string(), s("en")),
            ("Hmm.".to_string(), None),
            ("Plain json.".to_string(), None),
        ]
    );
    assert_eq!(fake.uploads()[0].field("language"), None);
}

#[tokio::test]
async fn openai_empty_transcript_gives_only_utterance_end() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::text("   ", Some("english")));
    fake.push(SttReply::text("Second.", Some("english")));
    let mut session = openai(&fake).start("en");
    speak(&mut session, 200);
    speak(&mut session, 200);
    assert_eq!(next(&mut session).await, SttEvent::UtteranceEnd);
    assert_eq!(next(&mut session).await, final_event("Second.", Some("en")));
    assert_eq!(next(&mut session).await, SttEvent::UtteranceEnd);
}

#[tokio::test]
async fn openai_retries_a_500_then_succeeds() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::status(500, "internal error"));
    fake.push(SttReply::disconnect());
    let mut session = openai(&fake).start("en");
    speak(&mut session, 200);
    assert_eq!(
        next(&mut session).await,
        final_event("Hello there.", Some("en"))
    );
    assert_eq!(fake.upload_count(), 3);
    let uploads = fake.uploads();
    assert_eq!(uploads[0].samples, uploads[2].samples);
}

#[tokio::test]
async fn openai_persistent_failure_ends_the_session_with_an_error() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::status(400, "Invalid file format."));
    let mut session = openai(&fake).start("en");
    speak(&mut session, 200);
    match next(&mut session).await {
        SttEvent::Error(ProviderError::Status { status, body, .. }) => {
            assert_eq!(status, 400);
            assert!(body.contains("Invalid file format."), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(tokio::time::timeout(DEADLINE, session.next_event())
        .await
        .unwrap()
        .is_none());
    assert_eq!(fake.upload_count(), 1);
}

#[tokio::test]
async fn openai_malformed_reply_is_a_protocol_error() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::raw("<html>502 Bad Gateway</html>"));
    let mut session = openai(&fake).start("en");
    speak(&mut session, 200);
    let event = next(&mut session).await;
    assert!(
        matches!(event, SttEvent::Error(ProviderError::Protocol { .. })),
        "{event:?}"
    );
}

#[tokio::test]
async fn openai_utterances_are_transcribed_in_order() {
    let fake = FakeOpenAiStt::start();
    fake.push(SttReply::text("One.", Some("english")).delay(Duration::from_millis(300)));
    fake.push(SttReply::text("Two.", Some("english")));
    let mut session = openai(&fake).start("en");
    speak(&mut session, 200);
    speak(&mut session, 300);
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let SttEvent::Final { text, .. } = next(&mut session).await {
            texts.push(text);
        }
    }
    assert_eq!(texts, ["One.", "Two."]);
    let lengths: Vec<usize> = fake.uploads().iter().map(|u| u.samples.len()).collect();
    assert_eq!(lengths, [200 * 16, 300 * 16]);
}

#[tokio::test]
async fn openai_ttfb_from_speech_end_to_final() {
    let fake = FakeOpenAiStt::start();
    let histogram = Arc::new(Histogram::new());
    let stt = Stt::from_config(&openai_config(&fake), Ttfb::new(histogram.clone())).unwrap();
    let mut session = stt.start("en");
    speak(&mut session, 200);
    until_final(&mut session).await;
    assert_eq!(histogram.count(), 1);
}

#[test]
fn from_config_names_the_provider() {
    let mut c = SttConfig::default();
    assert!(
        Stt::from_config(&c, Ttfb::none()).is_none(),
        "auto unresolved"
    );
    c.provider = SttKind::None;
    assert!(Stt::from_config(&c, Ttfb::none()).is_none());
}
