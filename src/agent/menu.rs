//! The built-in receptionist: what answers calls when no AI provider is configured, with no
//! network at all. It greets the caller in English and Spanish, takes the language from the
//! keypad (1 English, 2 Spanish), records a voicemail after a tone until the caller presses
//! `#`, stops talking for a while, or hangs up, thanks them and hangs up.
//!
//! The prompts are synthesized once at startup with the local espeak-ng voice, so a call
//! costs no synthesis. The voicemail is a 16 kHz WAV named after the Call-ID in
//! `<data_dir>/voicemail/`, finished even when the caller hangs up mid-message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parley_media::playout::{PlayoutProducer, ENGINE_RATE};
use parley_media::session::MediaEvent;
use parley_media::vad::SpeechEventKind;
use parley_media::wav::WavWriter;
use tokio::time::Instant;

use super::session::{sleep_until, AgentIo, FromAgent, ToAgent};
use crate::providers::tts::espeak::EspeakTts;
use crate::providers::ProviderError;

/// How long the caller has to choose after the greeting (the greeting is played twice).
const CHOICE_WAIT: Duration = Duration::from_secs(6);
/// The longest voicemail.
const MAX_MESSAGE: Duration = Duration::from_secs(120);
/// A message ends after this much silence once the caller has spoken (with the VAD on).
const END_SILENCE: Duration = Duration::from_secs(5);
/// How often queued prompt audio is topped up into the playout ring.
const PACE: Duration = Duration::from_millis(20);
/// How long to wait for the call to end once the agent has asked to hang up.
const HANGUP_WAIT: Duration = Duration::from_secs(10);

/// A language of the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Spanish,
}

impl Language {
    fn from_key(digit: char) -> Option<Language> {
        match digit {
            '1' => Some(Language::English),
            '2' => Some(Language::Spanish),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
        }
    }
}

/// What the receptionist says, in each language (English first, Spanish second).
pub struct MenuTexts {
    pub welcome_en: &'static str,
    pub welcome_es: &'static str,
    pub record: [&'static str; 2],
    pub thanks: [&'static str; 2],
    pub no_choice: &'static str,
}

pub const TEXTS: MenuTexts = MenuTexts {
    welcome_en: "Hello, thank you for calling. For English, press 1.",
    welcome_es: "Para español, oprima el dos.",
    record: [
        "Please leave your message after the tone. Press the pound key when you are done.",
        "Por favor, deje su mensaje después del tono. Oprima la tecla numeral cuando termine.",
    ],
    thanks: [
        "Thank you, your message has been recorded. Goodbye.",
        "Gracias, su mensaje ha sido grabado. Adiós.",
    ],
    no_choice: "Sorry, I did not get a choice. Goodbye.",
};

/// The prompts as 16 kHz audio, made once.
pub struct Menu {
    welcome: Vec<i16>,
    record: [Vec<i16>; 2],
    beep: Vec<i16>,
    thanks: [Vec<i16>; 2],
    no_choice: Vec<i16>,
    voicemail_dir: PathBuf,
}

impl Menu {
    /// Synthesizes the prompts with `voice` (espeak-ng); fails when it cannot run.
    pub async fn new(voice: &EspeakTts, voicemail_dir: PathBuf) -> Result<Menu, ProviderError> {
        let en = |t: &'static str| voice.synthesize(t, "en");
        let es = |t: &'static str| voice.synthesize(t, "es");
        let mut welcome = en(TEXTS.welcome_en).await?;
        welcome.extend(silence(300));
        welcome.extend(es(TEXTS.welcome_es).await?);
        Ok(Menu {
            welcome,
            record: [en(TEXTS.record[0]).await?, es(TEXTS.record[1]).await?],
            beep: beep(),
            thanks: [en(TEXTS.thanks[0]).await?, es(TEXTS.thanks[1]).await?],
            no_choice: en(TEXTS.no_choice).await?,
            voicemail_dir,
        })
    }
}

fn silence(ms: u32) -> Vec<i16> {
    vec![0; (ENGINE_RATE * ms / 1000) as usize]
}

/// The tone before the message: 1 kHz for 400 ms, with 5 ms ramps so it does not click.
fn beep() -> Vec<i16> {
    let n = (ENGINE_RATE * 400 / 1000) as usize;
    let ramp = (ENGINE_RATE * 5 / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(ENGINE_RATE);
            let gain = (i.min(n - 1 - i) as f64 / ramp as f64).min(1.0);
            (gain * 9_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin()) as i16
        })
        .collect()
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// The prompt played to its end, or the wait ran out.
    Nothing,
    Digit(char),
    /// While recording: the caller started or stopped speaking (the silence deadline moves).
    Speech,
    /// The call is over.
    Ended,
}

struct MenuCall {
    io: AgentIo,
    /// The voicemail being written, when recording.
    recording: Option<WavWriter>,
    in_speech: bool,
    last_speech_end: Option<Instant>,
}

/// Runs the receptionist on one call until the call ends; returns the playout producer.
pub async fn run(menu: Arc<Menu>, io: AgentIo) -> PlayoutProducer {
    let mut call = MenuCall {
        io,
        recording: None,
        in_speech: false,
        last_speech_end: None,
    };
    call.converse(&menu).await;
    call.io.playout
}

impl MenuCall {
    async fn converse(&mut self, menu: &Menu) {
        if let Some(intro) = self.io.intro.take() {
            if self.play(&intro, false).await == Heard::Ended {
                return;
            }
        }
        let mut choice = None;
        for _ in 0..2 {
            let heard = match self.play(&menu.welcome, true).await {
                Heard::Nothing => self.wait(Some(Instant::now() + CHOICE_WAIT)).await,
                other => other,
            };
            match heard {
                Heard::Ended => return,
                Heard::Digit(d) => {
                    choice = Language::from_key(d);
                    if choice.is_some() {
                        break;
                    }
                }
                Heard::Nothing | Heard::Speech => {}
            }
        }
        let Some(language) = choice else {
            tracing::info!("menu: no choice made, hanging up");
            if self.play(&menu.no_choice, false).await != Heard::Ended {
                self.hang_up().await;
            }
            return;
        };
        tracing::info!(language = language.code(), "menu: language chosen");
        let i = language.index();
        if self.play(&menu.record[i], false).await == Heard::Ended
            || self.play(&menu.beep, false).await == Heard::Ended
        {
            return;
        }
        let ended = self.record_message(menu).await;
        if ended {
            return;
        }
        if self.play(&menu.thanks[i], false).await != Heard::Ended {
            self.hang_up().await;
        }
    }

    /// Records until `#`, the silence after speech, the maximum length, or the end of the
    /// call; returns whether the call ended.
    async fn record_message(&mut self, menu: &Menu) -> bool {
        let name = crate::config::recording_name(&self.io.call_id);
        let path = menu.voicemail_dir.join(name);
        if let Err(e) = std::fs::create_dir_all(&menu.voicemail_dir) {
            tracing::warn!(dir = %menu.voicemail_dir.display(), error = %e, "cannot create the voicemail directory");
        }
        self.recording = match WavWriter::create(&path, ENGINE_RATE) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the voicemail");
                None
            }
        };
        // What the caller said while the prompt played is not part of the message.
        while self.io.audio.try_recv().is_ok() {}
        self.last_speech_end = None;
        let started = Instant::now();
        let heard = loop {
            let mut deadline = started + MAX_MESSAGE;
            if let (Some(end), false) = (self.last_speech_end, self.in_speech) {
                deadline = deadline.min(end + END_SILENCE);
            }
            match self.wait(Some(deadline)).await {
                Heard::Digit('#') | Heard::Nothing => break Heard::Nothing,
                Heard::Digit(_) | Heard::Speech => continue,
                Heard::Ended => break Heard::Ended,
            }
        };
        // Whatever the capture pump still holds belongs to the message.
        while let Ok(pcm) = self.io.audio.try_recv() {
            self.write(&pcm);
        }
        if let Some(w) = self.recording.take() {
            let seconds = started.elapsed().as_secs_f64();
            match w.finalize() {
                Ok(()) => tracing::info!(path = %path.display(), seconds, "voicemail recorded"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot finish the voicemail")
                }
            }
        }
        heard == Heard::Ended
    }

    fn write(&mut self, pcm: &[i16]) {
        if let Some(w) = self.recording.as_mut() {
            if let Err(e) = w.write_samples(pcm) {
                tracing::warn!(error = %e, "voicemail write failed");
                self.recording = None;
            }
        }
    }

    /// Plays `pcm` to its end; a key press stops it when `interruptible`.
    async fn play(&mut self, pcm: &[i16], interruptible: bool) -> Heard {
        let mut pos = 0;
        let end = self.io.playout.written() + pcm.len() as u64;
        loop {
            pos += self.io.playout.push(&pcm[pos..]);
            if pos >= pcm.len() && self.io.playout.read_position() >= end {
                return Heard::Nothing;
            }
            match self.wait(Some(Instant::now() + PACE)).await {
                Heard::Digit(d) if interruptible => {
                    self.io.playout.clear();
                    return Heard::Digit(d);
                }
                Heard::Ended => return Heard::Ended,
                _ => {}
            }
        }
    }

    /// Waits for a key until `deadline`, handling speech events and caller audio meanwhile.
    async fn wait(&mut self, deadline: Option<Instant>) -> Heard {
        let sleep = sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Heard::Nothing,
                ev = self.io.events.recv() => match ev {
                    None => return Heard::Ended,
                    Some(ToAgent::Media { event: MediaEvent::Dtmf(d), .. }) => return Heard::Digit(d.digit),
                    Some(ToAgent::Media { event: MediaEvent::Speech(s), .. }) => {
                        match s.kind {
                            SpeechEventKind::Start => {
                                self.in_speech = true;
                            }
                            SpeechEventKind::End => {
                                self.in_speech = false;
                                self.last_speech_end = Some(Instant::now());
                            }
                        }
                        if self.recording.is_some() {
                            return Heard::Speech;
                        }
                    }
                    Some(_) => {}
                },
                Some(pcm) = self.io.audio.recv() => self.write(&pcm),
            }
        }
    }

    async fn hang_up(&mut self) {
        let _ = self.io.requests.send(FromAgent::Hangup);
        // Keep draining until the call is over, so its task never waits on us.
        let _ = tokio::time::timeout(HANGUP_WAIT, async {
            while self.io.events.recv().await.is_some() {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_choose_the_language() {
        assert_eq!(Language::from_key('1'), Some(Language::English));
        assert_eq!(Language::from_key('2'), Some(Language::Spanish));
        assert_eq!(Language::from_key('3'), None);
        assert_eq!(Language::Spanish.code(), "es");
    }

    #[test]
    fn the_beep_is_a_clean_tone() {
        let b = beep();
        assert_eq!(b.len(), 6_400);
        assert_eq!(b[0], 0, "ramped in");
        assert!(b.iter().map(|s| s.unsigned_abs()).max().unwrap() > 8_000);
        assert!(b[b.len() - 1].unsigned_abs() < 100, "ramped out");
    }
}
