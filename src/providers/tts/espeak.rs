//! Local speech with espeak-ng: no network, no key, the default voice and the fallback when
//! a vendor fails. One `espeak-ng --stdout -v <voice>` process per sentence, the text on its
//! stdin (never on the command line, where it could be read as an option); its stdout is a
//! WAV stream whose PCM is resampled to 16 kHz and handed on as it is read.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::{timeout, Instant};

use super::turn::{self, SentenceSynth, Sink};
use super::wav_stream::WavStream;
use super::TtsTurn;
use crate::config::agent::TtsConfig;
use crate::providers::audio::StreamResampler;
use crate::providers::{body_excerpt, ProviderError, Ttfb};

const PROVIDER: &str = "espeak";
const PROGRAM: &str = "espeak-ng";
/// Bytes read from espeak-ng per chunk: about 90 ms of 22.05 kHz audio.
const READ_CHUNK: usize = 4096;

fn default_voice(language: &str) -> &'static str {
    match language {
        "es" => "es",
        "pt" => "pt-br",
        _ => "en-us",
    }
}

#[derive(Debug, Clone)]
pub struct EspeakTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    program: String,
    config: TtsConfig,
    /// Limit for espeak-ng's first output, and for each later read.
    timeout: Duration,
    ttfb: Ttfb,
}

impl EspeakTts {
    pub fn new(config: &TtsConfig, ttfb: Ttfb) -> EspeakTts {
        EspeakTts::with_program(PROGRAM, config, ttfb)
    }

    fn with_program(program: &str, config: &TtsConfig, ttfb: Ttfb) -> EspeakTts {
        EspeakTts {
            inner: Arc::new(Inner {
                program: program.to_string(),
                config: config.clone(),
                timeout: Duration::from_millis(config.timeout_ms),
                ttfb,
            }),
        }
    }

    pub fn open_turn(&self, language: &str) -> TtsTurn {
        turn::sequential_turn(self.clone(), self.voice(language))
    }

    /// The whole of `text` at 16 kHz (fixed prompts: greeting, fallback, goodbye).
    pub async fn synthesize(&self, text: &str, language: &str) -> Result<Vec<i16>, ProviderError> {
        let mut pcm = Vec::new();
        if !text.trim().is_empty() {
            let voice = self.voice(language);
            self.speak(&voice, 0, text.trim(), &mut Sink::Collect(&mut pcm))
                .await?;
        }
        Ok(pcm)
    }

    fn voice(&self, language: &str) -> String {
        turn::voice_for(&self.inner.config, language, default_voice)
    }

    /// Reads espeak-ng's WAV from `stdout` into `sink` until it ends.
    async fn pump(
        &self,
        mut stdout: impl AsyncRead + Unpin,
        sentence: usize,
        sink: &mut Sink<'_>,
        started: Instant,
    ) -> Result<(), ProviderError> {
        let mut wav = WavStream::new();
        let mut resampler: Option<StreamResampler> = None;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut first = true;
        loop {
            let n = match timeout(self.inner.timeout, stdout.read(&mut buf)).await {
                Err(_) => {
                    return Err(ProviderError::Timeout {
                        provider: PROVIDER,
                        ms: self.inner.timeout.as_millis() as u64,
                    })
                }
                Ok(Err(e)) => return Err(local(format!("cannot read espeak-ng's output: {e}"))),
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
            };
            let bytes = wav.push(&buf[..n]).map_err(malformed)?.to_vec();
            if bytes.is_empty() {
                continue;
            }
            let r = match resampler.as_mut() {
                Some(r) => r,
                None => {
                    // The header is complete once PCM comes out of the parser.
                    let rate = wav.format().map_or(0, |f| f.sample_rate);
                    resampler.insert(StreamResampler::new(rate).map_err(malformed)?)
                }
            };
            let mut pcm = Vec::with_capacity(bytes.len() / 2);
            r.push_le_bytes(&bytes, &mut pcm);
            if first && !pcm.is_empty() {
                self.inner.ttfb.observe(started.elapsed());
                first = false;
            }
            sink.audio(sentence, pcm).await?;
        }
        match resampler {
            Some(mut r) => {
                let mut tail = Vec::new();
                r.finish(&mut tail);
                sink.audio(sentence, tail).await
            }
            // A header and no samples is silence; no header at all is a broken stream.
            None if wav.format().is_some() => Ok(()),
            None => Err(malformed("no WAV header in espeak-ng's output".into())),
        }
    }
}

impl SentenceSynth for EspeakTts {
    const NAME: &'static str = PROVIDER;

    async fn speak(
        &self,
        voice: &str,
        sentence: usize,
        text: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut child = Command::new(&self.inner.program)
            .args(["--stdout", "-v", voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the turn drops this future: the process must not outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(&self.inner.program, &e))?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(local("espeak-ng's pipes were not opened".into()));
        };

        // stderr is drained on the side so espeak-ng never blocks on it; it explains failures.
        let mut errors = Drain(tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes).await;
            bytes
        }));

        let input = format!("{}\n", plain_text(text));
        // Written while stdout is read: neither side can then wait on the other.
        let write = async move {
            // A write error means espeak-ng exited early; its status says why.
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        };
        let (_, result) = tokio::join!(write, self.pump(stdout, sentence, sink, started));
        if let Err(e @ ProviderError::Timeout { .. }) = result {
            return Err(e);
        }
        let status = match timeout(self.inner.timeout, child.wait()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(local(format!("cannot wait for espeak-ng: {e}"))),
            Err(_) => {
                return Err(ProviderError::Timeout {
                    provider: PROVIDER,
                    ms: self.inner.timeout.as_millis() as u64,
                })
            }
        };
        if status.success() {
            return result;
        }
        // The process has exited, so its stderr is at its end.
        let said = match timeout(self.inner.timeout, &mut errors.0).await {
            Ok(Ok(bytes)) => body_excerpt(&String::from_utf8_lossy(&bytes), 200),
            _ => String::new(),
        };
        Err(local(format!(
            "espeak-ng -v {voice} failed ({status}): {said}"
        )))
    }
}

/// A task reading a pipe, aborted when dropped.
struct Drain(tokio::task::JoinHandle<Vec<u8>>);

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `text` as plain words for espeak-ng: one line, and no `[[…]]`, which it would read as
/// phoneme codes.
fn plain_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace("[[", "[ [")
}

fn spawn_error(program: &str, e: &std::io::Error) -> ProviderError {
    if e.kind() == std::io::ErrorKind::NotFound {
        local(format!(
            "{program} not found: install the Debian package espeak-ng \
             (scripts/setup.sh installs it)"
        ))
    } else {
        local(format!("cannot run {program}: {e}"))
    }
}

fn local(reason: String) -> ProviderError {
    ProviderError::Local {
        provider: PROVIDER,
        reason,
    }
}

fn malformed(detail: String) -> ProviderError {
    ProviderError::Protocol {
        provider: PROVIDER,
        what: "WAV output",
        detail: body_excerpt(&detail, 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_says_which_package_to_install() {
        let tts = EspeakTts::with_program(
            "/nonexistent/espeak-ng",
            &TtsConfig::default(),
            Ttfb::none(),
        );
        let e = tts.synthesize("Hello.", "en").await.unwrap_err();
        assert!(matches!(e, ProviderError::Local { .. }), "{e:?}");
        assert!(e.to_string().contains("Debian package espeak-ng"), "{e}");
    }

    #[test]
    fn text_is_one_line_without_phoneme_brackets() {
        assert_eq!(plain_text("a\nb\r[[h@'loU]]"), "a b [ [h@'loU]]");
    }

    #[test]
    fn default_voices_by_language() {
        assert_eq!(default_voice("en"), "en-us");
        assert_eq!(default_voice("es"), "es");
        assert_eq!(default_voice("pt"), "pt-br");
    }
}
