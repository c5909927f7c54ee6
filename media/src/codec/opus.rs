//! Opus through the system libopus (via `audiopus`), mono, VOIP application,
//! 20 ms frames.
//!
//! * PCM rate 8, 12, 16, 24 or 48 kHz; the RTP clock is always 48 kHz
//!   (RFC 7587), whatever the PCM rate.
//! * `conceal` runs libopus packet-loss concealment (decode with no data).
//! * `decode_fec` recovers a lost frame from the LBRR (in-band FEC) data of
//!   the packet that followed it. It answers `None` when that packet carries
//!   no LBRR, which [`packet_has_fec`] reads from the packet header without
//!   decoding, so the caller can fall back to its own concealment.
//! * Delay: the encoder's look-ahead, 6.5 ms in the VOIP application
//!   ([`OpusCodec::delay_samples`]: 52 samples at 8 kHz, 104 at 16 kHz, 312 at
//!   48 kHz); the decoder adds none.
//!
//! libopus keeps its state in the two blocks allocated at construction and
//! uses only the stack per call, so encode/decode do not allocate.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate, Signal};

use super::{AudioCodec, CodecError, CodecKind};

/// Longest Opus packet duration (120 ms) at 48 kHz, the most a decode can produce.
const MAX_PACKET_SAMPLES_48K: usize = 5760;
/// Payload bytes `encode` will ever ask libopus to fill (RFC 6716: at most
/// 1275 bytes per frame, three frames plus headers per packet).
const MAX_PAYLOAD: usize = 4000;

/// Encoder/decoder settings for [`OpusCodec`] (and [`super::new_codec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// PCM rate of encode input / decode output: 8000, 12000, 16000, 24000 or 48000.
    pub sample_rate: u32,
    /// Target bitrate in bit/s (6000..=510000).
    pub bitrate: u32,
    /// Put in-band FEC (LBRR) in the packets we send.
    pub fec: bool,
    /// Expected packet loss in percent (0..=100); FEC is only produced when > 0.
    pub expected_loss_pct: u8,
    /// Discontinuous transmission: during silence the encoder emits 1–2 byte
    /// packets that the sender may skip.
    pub dtx: bool,
    /// Encoder complexity 0..=10 (CPU against quality).
    pub complexity: u8,
}

impl Default for OpusSettings {
    /// 16 kHz (the pipeline's internal rate), 32 kbit/s, FEC on for 5 %
    /// expected loss, no DTX, complexity 1. Complexity is the main cost
    /// knob: measured here on a release build, one 20 ms 16 kHz voiced frame
    /// encodes in about 60 µs at 0–1, 100–150 µs at 3–5 and 270–390 µs at
    /// 10 (the larger figures with FEC); decoding takes about 11 µs. (libopus 1.3 only spends bits on
    /// LBRR above roughly 24–32 kbit/s in wideband SILK; at 48 kHz, where it
    /// picks hybrid mode, FEC appears from about 64 kbit/s.)
    fn default() -> Self {
        Self {
            sample_rate: 16000,
            bitrate: 32000,
            fec: true,
            expected_loss_pct: 5,
            dtx: false,
            complexity: 1,
        }
    }
}

/// An Opus encoder and decoder pair for one call.
pub struct OpusCodec {
    enc: Encoder,
    dec: Decoder,
    sample_rate: u32,
    frame: usize,
    max_decode: usize,
    delay: usize,
}

impl std::fmt::Debug for OpusCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusCodec")
            .field("sample_rate", &self.sample_rate)
            .field("frame", &self.frame)
            .field("delay", &self.delay)
            .finish()
    }
}

impl OpusCodec {
    /// Build a mono VOIP encoder and decoder at `settings.sample_rate`.
    pub fn new(settings: OpusSettings) -> Result<Self, CodecError> {
        let rate = match settings.sample_rate {
            8000 => SampleRate::Hz8000,
            12000 => SampleRate::Hz12000,
            16000 => SampleRate::Hz16000,
            24000 => SampleRate::Hz24000,
            48000 => SampleRate::Hz48000,
            other => return Err(CodecError::UnsupportedSampleRate(other)),
        };
        if !(6000..=510_000).contains(&settings.bitrate) {
            return Err(CodecError::InvalidSetting(
                "bitrate must be 6000..=510000 bit/s",
            ));
        }
        if settings.expected_loss_pct > 100 {
            return Err(CodecError::InvalidSetting(
                "expected_loss_pct must be 0..=100",
            ));
        }
        if settings.complexity > 10 {
            return Err(CodecError::InvalidSetting("complexity must be 0..=10"));
        }
        let mut enc = Encoder::new(rate, Channels::Mono, Application::Voip)?;
        enc.set_bitrate(Bitrate::BitsPerSecond(settings.bitrate as i32))?;
        enc.set_inband_fec(settings.fec)?;
        enc.set_packet_loss_perc(settings.expected_loss_pct)?;
        enc.set_dtx(settings.dtx)?;
        enc.set_complexity(settings.complexity)?;
        enc.set_signal(Signal::Voice)?;
        let delay = enc.lookahead()? as usize;
        let dec = Decoder::new(rate, Channels::Mono)?;
        let per_ms = settings.sample_rate as usize / 1000;
        Ok(Self {
            enc,
            dec,
            sample_rate: settings.sample_rate,
            frame: per_ms * 20,
            max_decode: MAX_PACKET_SAMPLES_48K * settings.sample_rate as usize / 48000,
            delay,
        })
    }

    /// Samples (at the PCM rate) by which decoded audio lags encoder input.
    pub fn delay_samples(&self) -> usize {
        self.delay
    }
}

impl AudioCodec for OpusCodec {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn rtp_clock_rate(&self) -> u32 {
        48000
    }

    fn frame_samples(&self) -> usize {
        self.frame
    }

    /// `pcm` is one frame of 2.5, 5, 10, 20, 40 or 60 ms (20 ms normally).
    /// Under DTX a result of 1–2 bytes means "silence, need not be sent".
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        // libopus validates the frame length; bound it first so the lengths
        // handed across the FFI stay small.
        if pcm.is_empty() || pcm.len() > self.max_decode {
            return Err(CodecError::InvalidInputLength(pcm.len()));
        }
        let n = out.len().min(MAX_PAYLOAD);
        Ok(self.enc.encode(pcm, &mut out[..n])?)
    }

    /// Decodes a packet of any duration up to 120 ms if `out` is large enough.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::EmptyPayload);
        }
        let packet = Packet::try_from(payload)?;
        let n = out.len().min(self.max_decode);
        let signals = MutSignals::try_from(&mut out[..n])?;
        Ok(self.dec.decode(Some(packet), signals, false)?)
    }

    fn conceal(&mut self, out: &mut [i16]) -> Option<usize> {
        let frame = out.get_mut(..self.frame)?;
        let signals = MutSignals::try_from(frame).ok()?;
        self.dec.decode(None, signals, false).ok()
    }

    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) -> Option<usize> {
        if !packet_has_fec(next_payload) {
            return None;
        }
        // libopus only uses LBRR when the requested duration covers the
        // packet's frame; a longer packet than our frame would be concealed.
        if frame_duration_half_ms(*next_payload.first()?) > 40 {
            return None;
        }
        let frame = out.get_mut(..self.frame)?;
        let packet = Packet::try_from(next_payload).ok()?;
        let signals = MutSignals::try_from(frame).ok()?;
        self.dec.decode(Some(packet), signals, true).ok()
    }
}

/// Duration of one Opus frame of this TOC byte, in half milliseconds (RFC 6716 table 2).
fn frame_duration_half_ms(toc: u8) -> u32 {
    let config = toc >> 3;
    match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [20, 40, 80, 120][usize::from(config & 3)],
        // Hybrid: 10, 20 ms.
        12..=15 => [20, 40][usize::from(config & 1)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [5, 10, 20, 40][usize::from(config & 3)],
    }
}

/// Length of a frame as coded in a code 2/3 packet (RFC 6716 §3.2.1):
/// returns (length, bytes used).
fn coded_len(data: &[u8]) -> Option<(usize, usize)> {
    let &b0 = data.first()?;
    if b0 < 252 {
        Some((usize::from(b0), 1))
    } else {
        let &b1 = data.get(1)?;
        Some((usize::from(b0) + 4 * usize::from(b1), 2))
    }
}

/// The compressed data of the first frame of an Opus packet (RFC 6716 §3.2).
fn first_frame(packet: &[u8]) -> Option<&[u8]> {
    let (&toc, rest) = packet.split_first()?;
    match toc & 3 {
        0 => Some(rest),
        1 => (rest.len() % 2 == 0).then(|| &rest[..rest.len() / 2]),
        2 => {
            let (len, used) = coded_len(rest)?;
            rest.get(used..)?.get(..len)
        }
        _ => {
            let (&count_byte, mut rest) = rest.split_first()?;
            let count = usize::from(count_byte & 0x3F);
            if count == 0 {
                return None;
            }
            if count_byte & 0x40 != 0 {
                let mut padding = 0usize;
                loop {
                    let (&p, r) = rest.split_first()?;
                    rest = r;
                    if p == 255 {
                        padding += 254;
                    } else {
                        padding += usize::from(p);
                        break;
                    }
                }
                rest = rest.get(..rest.len().checked_sub(padding)?)?;
            }
            if count_byte & 0x80 != 0 {
                // VBR: count - 1 coded lengths, then the frames.
                let mut lens = rest;
                let mut first_len = None;
                for _ in 1..count {
                    let (len, used) = coded_len(lens)?;
                    first_len.get_or_insert(len);
                    lens = &lens[used..];
                }
                match first_len {
                    Some(len) => lens.get(..len),
                    None => Some(lens),
                }
            } else {
                (rest.len() % count == 0).then(|| &rest[..rest.len() / count])
            }
        }
    }
}

/// Whether an Opus packet carries in-band FEC (SILK LBRR data) for the frame
/// before it, read from the header bits without decoding.
///
/// A SILK or hybrid frame starts with range-coded flags of probability one
/// half, which therefore occupy the first bits of the frame verbatim (RFC 6716
/// §4.2.3): one VAD flag per 20 ms SILK frame then the LBRR flag, for the mid
/// channel and then (stereo) the side channel. CELT-only packets never carry
/// LBRR.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 {
        return false;
    }
    let silk_frames = if config < 12 {
        match config & 3 {
            0 | 1 => 1,
            2 => 2,
            _ => 3,
        }
    } else {
        1
    };
    let Some(&b0) = first_frame(packet).and_then(|f| f.first()) else {
        return false;
    };
    let mid = b0 & (0x80 >> silk_frames) != 0;
    let side = toc & 0x04 != 0 && b0 & (0x80 >> (2 * silk_frames + 1)) != 0;
    mid || side
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{best_lag, correlation, rms, sine, snr_db, speech_like};

    fn settings(rate: u32) -> OpusSettings {
        OpusSettings {
            sample_rate: rate,
            bitrate: 32000,
            ..OpusSettings::default()
        }
    }

    /// Encode and decode `input` frame by frame; returns the decoded stream and packets.
    fn run(codec: &mut OpusCodec, input: &[i16]) -> (Vec<i16>, Vec<Vec<u8>>) {
        let f = codec.frame_samples();
        let mut out = Vec::new();
        let mut packets = Vec::new();
        let mut buf = [0u8; 1500];
        let mut pcm = vec![0i16; f];
        for frame in input.chunks_exact(f) {
            let n = codec.encode(frame, &mut buf).unwrap();
            assert!(n > 0);
            packets.push(buf[..n].to_vec());
            assert_eq!(codec.decode(&buf[..n], &mut pcm), Ok(f));
            out.extend_from_slice(&pcm);
        }
        (out, packets)
    }

    #[test]
    fn round_trip_at_8_16_48_khz() {
        for rate in [8000u32, 16000, 48000] {
            let mut c = OpusCodec::new(settings(rate)).unwrap();
            assert_eq!(c.frame_samples(), rate as usize / 50);
            assert_eq!(c.rtp_clock_rate(), 48000);
            assert_eq!(
                c.delay_samples(),
                rate as usize * 65 / 10000,
                "look-ahead 6.5 ms"
            );
            let max_hz = f64::from(rate.min(16000)) * 0.45;
            let input = speech_like(rate, rate as usize * 2, max_hz);
            let (out, _) = run(&mut c, &input);
            // The waveform lines up at the advertised delay (within 0.5 ms).
            let lag = best_lag(&input, &out, c.delay_samples() * 2);
            assert!(
                lag.abs_diff(c.delay_samples()) <= rate as usize / 2000,
                "{rate} Hz: lag {lag}"
            );
            // Skip the first 100 ms (encoder warm-up).
            let skip = rate as usize / 10;
            let corr = correlation(&input[skip..], &out[skip..], lag);
            let snr = snr_db(&input[skip..], &out[skip..], lag);
            assert!(corr > 0.8, "{rate} Hz: correlation {corr:.3}");
            assert!(snr > 4.0, "{rate} Hz: SNR {snr:.1} dB");
            let level = rms(&out[skip..]) / rms(&input[skip..]);
            assert!((0.8..1.2).contains(&level), "{rate} Hz: level {level:.2}");

            // A steady tone is reproduced closely.
            let mut c = OpusCodec::new(settings(rate)).unwrap();
            let input = sine(rate, rate as usize, 440.0, 10000.0);
            let (out, _) = run(&mut c, &input);
            let d = c.delay_samples();
            let lag = (d - d / 10..d + d / 10)
                .max_by(|&a, &b| {
                    correlation(&input[skip..], &out[skip..], a).total_cmp(&correlation(
                        &input[skip..],
                        &out[skip..],
                        b,
                    ))
                })
                .unwrap();
            let snr = snr_db(&input[skip..], &out[skip..], lag);
            assert!(snr > 15.0, "{rate} Hz tone: SNR {snr:.1} dB");
        }
    }

    /// Packet-loss concealment after a voiced stretch: each concealed frame
    /// keeps roughly the level of the frame it replaces, and in aggregate
    /// its first 5 ms track the lost signal better than silence would.
    #[test]
    fn conceal_continues_the_signal_plausibly() {
        let rate = 16000;
        let mut enc = OpusCodec::new(settings(rate)).unwrap();
        let mut dec = OpusCodec::new(settings(rate)).unwrap();
        let input = speech_like(rate, rate as usize * 3, 7000.0);
        let (_, packets) = run(&mut enc, &input);
        let f = enc.frame_samples();
        let d = enc.delay_samples();
        let head = f / 4;
        let (mut sig, mut err, mut losses) = (0.0, 0.0, 0);
        let mut pcm = vec![0i16; f];
        for (k, p) in packets.iter().enumerate() {
            if k >= 10 && k % 7 == 0 {
                assert_eq!(dec.conceal(&mut pcm), Some(f));
                let truth = &input[k * f - d..(k + 1) * f - d];
                let level = rms(&pcm) / rms(truth);
                assert!(
                    (0.3..1.5).contains(&level),
                    "frame {k}: PLC level ratio {level:.2}"
                );
                for i in 0..head {
                    let t = f64::from(truth[i]);
                    sig += t * t;
                    err += (t - f64::from(pcm[i])).powi(2);
                }
                losses += 1;
                continue;
            }
            dec.decode(p, &mut pcm).unwrap();
        }
        assert!(losses >= 15);
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 1.0, "PLC head SNR {snr:.1} dB (0 dB = silence)");
        // Too small a buffer: no concealment rather than a panic.
        assert_eq!(dec.conceal(&mut pcm[..f - 1]), None);
    }

    /// With FEC on, recovering a lost frame from the next packet's LBRR is
    /// closer to the original than PLC, summed over many separate losses.
    #[test]
    fn fec_beats_plc() {
        let rate = 16000;
        let s = OpusSettings {
            sample_rate: rate,
            bitrate: 32000,
            fec: true,
            expected_loss_pct: 20,
            ..OpusSettings::default()
        };
        let mut enc = OpusCodec::new(s).unwrap();
        let mut with_fec = OpusCodec::new(s).unwrap();
        let mut with_plc = OpusCodec::new(s).unwrap();
        let input = speech_like(rate, rate as usize * 4, 7000.0);
        let (_, packets) = run(&mut enc, &input);
        let f = enc.frame_samples();
        let d = enc.delay_samples();
        let (mut err_fec, mut err_plc, mut losses) = (0.0, 0.0, 0);
        let mut a = vec![0i16; f];
        let mut b = vec![0i16; f];
        for (k, p) in packets.iter().enumerate() {
            // Lose packets whose successor carries LBRR (the case decode_fec serves).
            if k >= 10 && k % 5 == 0 && k + 1 < packets.len() && packet_has_fec(&packets[k + 1]) {
                assert_eq!(with_fec.decode_fec(&packets[k + 1], &mut a), Some(f));
                assert_eq!(with_plc.conceal(&mut b), Some(f));
                let truth = &input[k * f - d..(k + 1) * f - d];
                for i in 0..f {
                    let t = f64::from(truth[i]);
                    err_fec += (t - f64::from(a[i])).powi(2);
                    err_plc += (t - f64::from(b[i])).powi(2);
                }
                losses += 1;
                continue;
            }
            with_fec.decode(p, &mut a).unwrap();
            with_plc.decode(p, &mut b).unwrap();
        }
        assert!(losses >= 20, "only {losses} losses had FEC");
        assert!(
            err_fec * 2.0 < err_plc,
            "FEC error {err_fec:.3e} not well below PLC error {err_plc:.3e}"
        );
    }

    #[test]
    fn fec_flag_follows_the_encoder_setting() {
        let rate = 16000;
        let input = speech_like(rate, rate as usize, 7000.0);
        for (fec, loss) in [(false, 20u8), (true, 0), (true, 20)] {
            let mut c = OpusCodec::new(OpusSettings {
                sample_rate: rate,
                bitrate: 32000,
                fec,
                expected_loss_pct: loss,
                ..OpusSettings::default()
            })
            .unwrap();
            let (_, packets) = run(&mut c, &input);
            let with = packets[5..].iter().filter(|p| packet_has_fec(p)).count();
            if fec && loss > 0 {
                assert!(
                    with * 2 > packets.len(),
                    "{with}/{} carry LBRR",
                    packets.len()
                );
            } else {
                assert_eq!(with, 0, "fec {fec} loss {loss}");
                let mut out = vec![0i16; c.frame_samples()];
                assert_eq!(c.decode_fec(&packets[10], &mut out), None);
            }
        }
    }

    /// `packet_has_fec` says exactly what libopus does: a fresh decoder asked
    /// for FEC produces audio only from a packet with LBRR (otherwise it
    /// conceals, which from a fresh state is silence).
    #[test]
    fn fec_probe_agrees_with_libopus() {
        let (mut with, mut without) = (0, 0);
        for (rate, bitrate) in [
            (8000, 24000),
            (16000, 32000),
            (48000, 64000),
            (48000, 24000),
        ] {
            let mut c = OpusCodec::new(OpusSettings {
                sample_rate: rate,
                bitrate,
                expected_loss_pct: 10,
                ..OpusSettings::default()
            })
            .unwrap();
            let input = speech_like(rate, rate as usize, 7000.0);
            let (_, packets) = run(&mut c, &input);
            for p in &packets {
                let mut d = Decoder::new(SampleRate::Hz16000, Channels::Mono).unwrap();
                let mut o = [0i16; 320];
                let packet = Packet::try_from(&p[..]).unwrap();
                let signals = MutSignals::try_from(&mut o[..]).unwrap();
                assert_eq!(d.decode(Some(packet), signals, true).unwrap(), 320);
                let libopus_has_fec = o.iter().any(|&s| s != 0);
                assert_eq!(
                    packet_has_fec(p),
                    libopus_has_fec,
                    "{rate} Hz {bitrate} bit/s"
                );
                if libopus_has_fec {
                    with += 1;
                } else {
                    without += 1;
                }
            }
        }
        // Both answers occurred, so the comparison meant something.
        assert!(with > 50 && without > 50, "{with} with, {without} without");
    }

    #[test]
    fn packet_parsing_of_every_framing_code() {
        // SILK WB 20 ms (config 9), mono; first frame byte 0b1100_0000 =
        // VAD 1, LBRR 1.
        assert!(packet_has_fec(&[9 << 3, 0xC0, 0x11]));
        assert!(!packet_has_fec(&[9 << 3, 0x80, 0x11]));
        // Code 1: two equal frames, look at the first.
        assert!(packet_has_fec(&[(9 << 3) | 1, 0x40, 0x00]));
        assert!(!packet_has_fec(&[(9 << 3) | 1, 0x00, 0x40]));
        // Code 2: explicit first length 1.
        assert!(packet_has_fec(&[(9 << 3) | 2, 1, 0x40, 0x00, 0x00]));
        assert!(!packet_has_fec(&[(9 << 3) | 2, 1, 0x00, 0x40, 0x40]));
        // Code 3 CBR, 2 frames, with 1 byte of padding.
        assert!(packet_has_fec(&[(9 << 3) | 3, 0x42, 1, 0x40, 0x00, 0xEE]));
        // Code 3 VBR, 2 frames, first of length 2.
        assert!(!packet_has_fec(&[(9 << 3) | 3, 0x82, 2, 0x00, 0x00, 0x40]));
        assert!(packet_has_fec(&[(9 << 3) | 3, 0x82, 2, 0x40, 0x00, 0x00]));
        // 40 ms SILK (config 10): two VAD flags, then LBRR at bit 2.
        assert!(packet_has_fec(&[10 << 3, 0x20]));
        assert!(!packet_has_fec(&[10 << 3, 0x40]));
        // Stereo: the side channel's LBRR flag follows the mid flags.
        assert!(packet_has_fec(&[(9 << 3) | 4, 0x10]));
        assert!(!packet_has_fec(&[9 << 3, 0x10]));
        // Hybrid counts, CELT never does.
        assert!(packet_has_fec(&[13 << 3, 0x40]));
        assert!(!packet_has_fec(&[31 << 3, 0xFF]));
        // Truncated or inconsistent packets are "no FEC", never a panic.
        for bad in [
            &[][..],
            &[9 << 3],
            &[(9 << 3) | 1, 0x40],
            &[(9 << 3) | 2, 5, 0x40],
            &[(9 << 3) | 3],
            &[(9 << 3) | 3, 0x00, 0x40],
            &[(9 << 3) | 3, 0x41, 0xFF],
            &[(9 << 3) | 3, 0x83, 1],
            &[(9 << 3) | 3, 0x03, 0x40, 0x40],
        ] {
            assert!(!packet_has_fec(bad), "{bad:?}");
        }
        assert_eq!(frame_duration_half_ms(9 << 3), 40);
        assert_eq!(frame_duration_half_ms(11 << 3), 120);
        assert_eq!(frame_duration_half_ms(16 << 3), 5);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut c = OpusCodec::new(settings(16000)).unwrap();
        let mut out = vec![0i16; 1920];
        // Code 3 packet with a frame count of zero.
        assert!(matches!(
            c.decode(&[0x03, 0x00], &mut out),
            Err(CodecError::Opus(_))
        ));
        // Code 2 packet whose first frame is longer than the packet.
        assert!(matches!(
            c.decode(&[0x02, 200, 1, 2], &mut out),
            Err(CodecError::Opus(_))
        ));
        // Code 1 packet with an odd payload (frames must be equal).
        assert!(matches!(
            c.decode(&[0x01, 1, 2, 3], &mut out),
            Err(CodecError::Opus(_))
        ));
        assert_eq!(c.decode(&[], &mut out), Err(CodecError::EmptyPayload));
        // A 60 ms packet does not fit a 20 ms buffer.
        let mut big = OpusCodec::new(settings(16000)).unwrap();
        let mut pkt = [0u8; 1500];
        let n = big.encode(&[0i16; 960], &mut pkt).unwrap();
        assert!(matches!(
            c.decode(&pkt[..n], &mut out[..320]),
            Err(CodecError::Opus(_))
        ));
        assert_eq!(c.decode(&pkt[..n], &mut out), Ok(960));
        // Bad frame lengths on encode.
        assert!(c.encode(&[0i16; 100], &mut pkt).is_err());
        assert!(c.encode(&[], &mut pkt).is_err());
        assert!(c.encode(&[0i16; 320], &mut []).is_err());
        // Still works afterwards.
        let n = c.encode(&[0i16; 320], &mut pkt).unwrap();
        assert_eq!(c.decode(&pkt[..n], &mut out), Ok(320));
    }

    #[test]
    fn settings_are_validated() {
        for bad in [
            OpusSettings {
                bitrate: 100,
                ..OpusSettings::default()
            },
            OpusSettings {
                expected_loss_pct: 101,
                ..OpusSettings::default()
            },
            OpusSettings {
                complexity: 11,
                ..OpusSettings::default()
            },
        ] {
            assert!(matches!(
                OpusCodec::new(bad),
                Err(CodecError::InvalidSetting(_))
            ));
        }
        assert_eq!(
            OpusCodec::new(OpusSettings {
                sample_rate: 22050,
                ..OpusSettings::default()
            })
            .err(),
            Some(CodecError::UnsupportedSampleRate(22050))
        );
    }

    #[test]
    fn dtx_shrinks_silence() {
        let mut c = OpusCodec::new(OpusSettings {
            dtx: true,
            ..OpusSettings::default()
        })
        .unwrap();
        let mut pkt = [0u8; 1500];
        let mut small = 0;
        for _ in 0..50 {
            let n = c.encode(&[0i16; 320], &mut pkt).unwrap();
            if n <= 2 {
                small += 1;
            }
        }
        assert!(small > 30, "only {small} DTX frames");
    }
}
