//! Audio codecs behind one trait: G.711 (PCMU/PCMA), G.722 and Opus.
//!
//! Every codec works on caller-provided slices: `encode` writes the payload
//! into `out` and returns its length, `decode` writes PCM into `out` and
//! returns the number of samples. Codec state and scratch space are
//! allocated once at construction, so the per-frame calls never touch the
//! heap, never lock and never panic, whatever the payload contains (a
//! malformed packet is a [`CodecError`]).
//!
//! | codec | PCM rate | RTP clock | payload per 20 ms | delay (encode + decode) |
//! |-------|----------|-----------|-------------------|-------------------------|
//! | PCMU / PCMA | 8 kHz | 8000 | 160 bytes | 0 |
//! | G.722 | 16 kHz | 8000 (RFC 3551 quirk) | 160 bytes | 22 samples (1.375 ms), QMF filters |
//! | Opus | 8/12/16/24/48 kHz | 48000 (RFC 7587) | variable | 6.5 ms (encoder look-ahead) |

mod g711;
pub mod g722;
pub mod opus;
#[cfg(test)]
pub(crate) mod testutil;

pub use self::g711::G711Codec;
pub use self::g722::{G722Codec, G722Decoder, G722Encoder};
pub use self::opus::{packet_has_fec, OpusCodec, OpusSettings};

/// Why an encode, decode or construction failed.
///
/// Small and `Copy` so that the error path does not allocate either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The output slice cannot hold the result.
    #[error("output buffer too small: need {needed}, have {available}")]
    OutputTooSmall {
        /// Elements (bytes or samples) the call needed.
        needed: usize,
        /// Elements the caller provided.
        available: usize,
    },
    /// The PCM input has a length the codec cannot encode.
    #[error("invalid input length {0}")]
    InvalidInputLength(usize),
    /// An empty payload was given to `decode` (use `conceal` for a lost frame).
    #[error("empty payload")]
    EmptyPayload,
    /// The codec does not run at this PCM sample rate.
    #[error("unsupported sample rate {0} Hz")]
    UnsupportedSampleRate(u32),
    /// A setting is out of range.
    #[error("invalid codec setting: {0}")]
    InvalidSetting(&'static str),
    /// libopus rejected the call (for example a malformed packet).
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
}

/// One audio codec instance: encoder and decoder state for one call direction pair.
pub trait AudioCodec: Send {
    /// Which codec this is.
    fn kind(&self) -> CodecKind;
    /// PCM sample rate of `encode` input and `decode` output, in Hz.
    fn sample_rate(&self) -> u32;
    /// RTP timestamp clock rate: 8000 for G.722 (RFC 3551), 48000 for Opus (RFC 7587).
    fn rtp_clock_rate(&self) -> u32;
    /// PCM samples in 20 ms at [`sample_rate`](AudioCodec::sample_rate).
    fn frame_samples(&self) -> usize;
    /// RTP timestamp increment for one 20 ms frame.
    fn frame_rtp_ticks(&self) -> u32 {
        self.rtp_clock_rate() / 50
    }
    /// Encode `pcm` into `out`; returns the payload length in bytes.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError>;
    /// Decode one RTP payload into `out`; returns the number of samples written.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError>;
    /// Codec-native loss concealment for one frame (Opus PLC); `None`: the caller conceals.
    fn conceal(&mut self, _out: &mut [i16]) -> Option<usize> {
        None
    }
    /// Recover the previous (lost) frame from in-band FEC carried in `next_payload`
    /// (Opus LBRR); `None` if the codec has no FEC or the packet carries none.
    fn decode_fec(&mut self, _next_payload: &[u8], _out: &mut [i16]) -> Option<usize> {
        None
    }
}

/// The codecs Parley speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// ITU-T G.722, 64 kbit/s wideband.
    G722,
    /// Opus (RFC 6716 / RFC 7587).
    Opus,
}

impl CodecKind {
    /// Every kind, in Parley's default offer order (best first).
    pub const ALL: [CodecKind; 4] = [
        CodecKind::Opus,
        CodecKind::G722,
        CodecKind::Pcmu,
        CodecKind::Pcma,
    ];

    /// SDP encoding name as registered (case as in RFC 3551 / RFC 7587).
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
            CodecKind::Opus => "opus",
        }
    }

    /// Static RTP payload type (RFC 3551 table 4); `None` for Opus, which is dynamic.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::Opus => None,
        }
    }

    /// The `a=rtpmap` value after the payload type.
    pub fn rtpmap(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU/8000",
            CodecKind::Pcma => "PCMA/8000",
            CodecKind::G722 => "G722/8000",
            CodecKind::Opus => "opus/48000/2",
        }
    }

    /// RTP timestamp clock rate (what `rtpmap` advertises).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8000,
            CodecKind::Opus => 48000,
        }
    }

    /// The kind for a static payload type of incoming RTP.
    pub fn from_static_payload_type(pt: u8) -> Option<CodecKind> {
        match pt {
            0 => Some(CodecKind::Pcmu),
            8 => Some(CodecKind::Pcma),
            9 => Some(CodecKind::G722),
            _ => None,
        }
    }

    /// The kind for an `a=rtpmap` encoding name and clock rate (names compare
    /// case-insensitively, as SDP requires).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<CodecKind> {
        CodecKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name) && k.rtp_clock_rate() == clock_rate)
    }
}

impl std::fmt::Display for CodecKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Build a codec. `opus` is used only for [`CodecKind::Opus`].
pub fn new_codec(kind: CodecKind, opus: OpusSettings) -> Result<Box<dyn AudioCodec>, CodecError> {
    Ok(match kind {
        CodecKind::Pcmu => Box::new(G711Codec::new(crate::g711::G711::Ulaw)),
        CodecKind::Pcma => Box::new(G711Codec::new(crate::g711::G711::Alaw)),
        CodecKind::G722 => Box::new(G722Codec::new()),
        CodecKind::Opus => Box::new(OpusCodec::new(opus)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_are_send() {
        fn send<T: Send>() {}
        send::<Box<dyn AudioCodec>>();
        send::<G711Codec>();
        send::<G722Codec>();
        send::<OpusCodec>();
        send::<crate::resample::Resampler>();
    }

    #[test]
    fn kind_metadata() {
        assert_eq!(CodecKind::Pcmu.static_payload_type(), Some(0));
        assert_eq!(CodecKind::Pcma.static_payload_type(), Some(8));
        assert_eq!(CodecKind::G722.static_payload_type(), Some(9));
        assert_eq!(CodecKind::Opus.static_payload_type(), None);
        assert_eq!(CodecKind::Pcmu.rtpmap(), "PCMU/8000");
        assert_eq!(CodecKind::Pcma.rtpmap(), "PCMA/8000");
        assert_eq!(CodecKind::G722.rtpmap(), "G722/8000");
        assert_eq!(CodecKind::Opus.rtpmap(), "opus/48000/2");
        for k in CodecKind::ALL {
            // rtpmap starts with the name and carries the clock rate.
            assert!(k.rtpmap().starts_with(k.name()));
            assert!(k.rtpmap().contains(&format!("/{}", k.rtp_clock_rate())));
            if let Some(pt) = k.static_payload_type() {
                assert_eq!(CodecKind::from_static_payload_type(pt), Some(k));
            }
            assert_eq!(
                CodecKind::from_rtpmap(k.name(), k.rtp_clock_rate()),
                Some(k)
            );
        }
        assert_eq!(CodecKind::from_rtpmap("OPUS", 48000), Some(CodecKind::Opus));
        assert_eq!(CodecKind::from_rtpmap("g722", 8000), Some(CodecKind::G722));
        assert_eq!(CodecKind::from_rtpmap("G722", 16000), None);
        assert_eq!(CodecKind::from_static_payload_type(18), None);
        assert_eq!(CodecKind::Opus.to_string(), "opus");
    }

    #[test]
    fn new_codec_builds_every_kind_with_consistent_timing() {
        for kind in CodecKind::ALL {
            let c = new_codec(kind, OpusSettings::default()).unwrap();
            assert_eq!(c.kind(), kind);
            assert_eq!(c.rtp_clock_rate(), kind.rtp_clock_rate());
            assert_eq!(c.frame_samples() as u32, c.sample_rate() / 50);
            assert_eq!(c.frame_rtp_ticks(), kind.rtp_clock_rate() / 50);
        }
        let g722 = new_codec(CodecKind::G722, OpusSettings::default()).unwrap();
        assert_eq!((g722.sample_rate(), g722.rtp_clock_rate()), (16000, 8000));
        let opus = new_codec(
            CodecKind::Opus,
            OpusSettings {
                sample_rate: 8000,
                ..OpusSettings::default()
            },
        )
        .unwrap();
        assert_eq!((opus.sample_rate(), opus.rtp_clock_rate()), (8000, 48000));
        assert_eq!(opus.frame_rtp_ticks(), 960);
        let bad = new_codec(
            CodecKind::Opus,
            OpusSettings {
                sample_rate: 44100,
                ..OpusSettings::default()
            },
        );
        assert_eq!(bad.err(), Some(CodecError::UnsupportedSampleRate(44100)));
    }

    /// Every codec survives arbitrary payloads and odd buffer sizes without panicking.
    #[test]
    fn no_panic_on_garbage() {
        let mut seed = 0x1234_5678u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for kind in CodecKind::ALL {
            let mut c = new_codec(kind, OpusSettings::default()).unwrap();
            let mut out = vec![0i16; 5760];
            let mut payload = [0u8; 1500];
            for round in 0..300 {
                let len = (next() as usize) % payload.len();
                for b in payload[..len].iter_mut() {
                    *b = next() as u8;
                }
                let out_len = if round % 7 == 0 {
                    (next() as usize) % 200
                } else {
                    out.len()
                };
                let _ = c.decode(&payload[..len], &mut out[..out_len]);
                let _ = c.decode_fec(&payload[..len], &mut out[..out_len]);
                let _ = c.conceal(&mut out[..out_len]);
            }
            let pcm = vec![1000i16; 2000];
            let mut enc = [0u8; 4000];
            for n in [0usize, 1, 3, 159, 160, 161, 320, 960, 2000] {
                for m in [0usize, 1, 10, 4000] {
                    let _ = c.encode(&pcm[..n], &mut enc[..m]);
                }
            }
        }
    }
}
