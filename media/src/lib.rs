//! Parley's real-time media library: RTP and RTCP, the adaptive jitter buffer with loss
//! concealment and comfort noise, codecs (G.711, G.722, Opus), resampling, DTMF (RFC 4733
//! and in-band), voice activity detection (Silero, batched across calls), silence
//! suppression (talkspurts), call quality (E-model MOS), the lock-free playout and capture
//! rings, the sans-I/O media session and the media worker threads, and WAV I/O. It knows
//! nothing about SIP, HTTP or AI providers.
//!
//! The per-frame paths (`g711`, `rtp`) work on caller-provided slices and
//! never allocate or panic on bad input, so they can run on the media
//! thread for every 20 ms packet of every call.

#![forbid(unsafe_code)]

pub mod cng;
pub mod codec;
pub mod dtmf;
pub mod emodel;
pub mod engine;
pub mod g711;
pub mod halfband;
pub mod jitter;
pub mod playout;
pub mod plc;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod stats;
pub mod talkspurt;
pub mod vad;
pub mod wav;
pub mod webrtc;

pub use cng::ComfortNoise;
pub use g711::{
    alaw_decode, alaw_encode, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw, ulaw_decode,
    ulaw_encode, G711,
};
pub use jitter::{
    JitterBuffer, JitterConfig, JitterConfigError, JitterStats, Playout, PushOutcome,
};
pub use plc::Concealer;
pub use rtp::{
    is_rtcp, parse as parse_rtp, write_packet, RtpError, RtpExtension, RtpHeader, RtpPacket,
    RtpSender, RTP_HEADER_LEN,
};
pub use wav::{parse_wav, read_wav, resample_linear, Audio, WavError, WavWriter};
