//! WAV file input (prompts) and output (call recordings).
//!
//! Reading accepts what real prompt files come as — PCM 8/16/24/32-bit,
//! 32/64-bit float, G.711 A-law/µ-law, each optionally wrapped in
//! `WAVE_FORMAT_EXTENSIBLE`, any channel count — and normalises to mono
//! 16-bit, which is what the media path works in. Writing produces plain
//! 16-bit mono PCM, streamed, so a recording never has to sit in memory.
//!
//! This module allocates freely: it runs at call setup and teardown, not
//! per frame.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use thiserror::Error;

use crate::g711;

/// Why a WAV file could not be read or written.
#[derive(Debug, Error)]
pub enum WavError {
    /// Filesystem error while reading or writing.
    #[error("WAV I/O error: {0}")]
    Io(#[from] io::Error),
    /// The first four bytes are not `RIFF`.
    #[error("not a RIFF file")]
    NotRiff,
    /// The RIFF form type is not `WAVE`.
    #[error("not a WAVE file (RIFF form type is not WAVE)")]
    NotWave,
    /// No `fmt ` chunk before the end of the file.
    #[error("fmt chunk missing")]
    FmtMissing,
    /// The `fmt ` chunk is shorter than the fields its format needs.
    #[error("truncated fmt chunk")]
    TruncatedFmt,
    /// No `data` chunk before the end of the file.
    #[error("data chunk missing")]
    DataMissing,
    /// A format tag this reader does not decode.
    #[error("unsupported format tag {0}")]
    UnsupportedFormat(u16),
    /// A known format tag with a sample width it does not use.
    #[error("unsupported bits per sample {bits} for format tag {tag}")]
    UnsupportedBits {
        /// Effective format tag (after unwrapping EXTENSIBLE).
        tag: u16,
        /// Declared bits per sample.
        bits: u16,
    },
    /// A WAVE_FORMAT_EXTENSIBLE sub-format GUID outside the standard
    /// `xxxxxxxx-0000-0010-8000-00aa00389b71` family.
    #[error("unsupported WAVE_FORMAT_EXTENSIBLE sub-format GUID")]
    UnsupportedSubFormat,
    /// Header fields that contradict each other or are zero.
    #[error("invalid fmt chunk: {0}")]
    InvalidFmt(&'static str),
    /// A sample rate of zero was given to the writer.
    #[error("invalid sample rate {0}")]
    InvalidSampleRate(u32),
    /// The recording would exceed the 4 GiB limit of the RIFF size fields.
    #[error("WAV data would exceed the 4 GiB RIFF limit")]
    TooLarge,
}

/// Decoded mono audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Samples per second.
    pub sample_rate: u32,
    /// Mono 16-bit samples.
    pub samples: Vec<i16>,
}

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_IEEE_FLOAT: u16 = 0x0003;
const FORMAT_ALAW: u16 = 0x0006;
const FORMAT_MULAW: u16 = 0x0007;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Bytes 2..16 of every standard `KSDATAFORMAT_SUBTYPE_*` GUID as stored in
/// the file (little-endian Data1..Data3): the first two bytes carry the
/// plain format tag.
const SUBFORMAT_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// How one sample is stored, resolved from the fmt chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleFormat {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
    Alaw,
    Ulaw,
}

impl SampleFormat {
    fn bytes(self) -> usize {
        match self {
            SampleFormat::U8 | SampleFormat::Alaw | SampleFormat::Ulaw => 1,
            SampleFormat::I16 => 2,
            SampleFormat::I24 => 3,
            SampleFormat::I32 | SampleFormat::F32 => 4,
            SampleFormat::F64 => 8,
        }
    }

    /// Decode one sample to a signed value scaled so that full scale is
    /// ±2^31, so channels can be averaged before rounding to 16 bits.
    fn decode(self, b: &[u8]) -> i64 {
        match self {
            SampleFormat::U8 => (i64::from(b[0]) - 128) << 24,
            SampleFormat::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])) << 16,
            SampleFormat::I24 => i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]])),
            SampleFormat::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            // `as` saturates out-of-range floats and maps NaN to 0.
            SampleFormat::F32 => {
                (f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])) * 2_147_483_648.0) as i64
            }
            SampleFormat::F64 => {
                let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                (v * 2_147_483_648.0) as i64
            }
            SampleFormat::Alaw => i64::from(g711::alaw_decode(b[0])) << 16,
            SampleFormat::Ulaw => i64::from(g711::ulaw_decode(b[0])) << 16,
        }
    }
}

/// The parts of a fmt chunk the decoder needs.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    format: SampleFormat,
    channels: u16,
    sample_rate: u32,
}

fn parse_fmt(body: &[u8]) -> Result<Fmt, WavError> {
    if body.len() < 16 {
        return Err(WavError::TruncatedFmt);
    }
    let mut tag = le16(body, 0);
    let channels = le16(body, 2);
    let sample_rate = le32(body, 4);
    let block_align = le16(body, 12);
    let bits = le16(body, 14);

    if tag == FORMAT_EXTENSIBLE {
        // cbSize (2) + valid bits (2) + channel mask (4) + GUID (16).
        if body.len() < 40 {
            return Err(WavError::TruncatedFmt);
        }
        let guid = &body[24..40];
        if guid[2..] != SUBFORMAT_GUID_TAIL {
            return Err(WavError::UnsupportedSubFormat);
        }
        tag = le16(guid, 0);
        if tag == FORMAT_EXTENSIBLE {
            return Err(WavError::UnsupportedSubFormat);
        }
    }

    let format = match (tag, bits) {
        (FORMAT_PCM, 8) => SampleFormat::U8,
        (FORMAT_PCM, 16) => SampleFormat::I16,
        (FORMAT_PCM, 24) => SampleFormat::I24,
        (FORMAT_PCM, 32) => SampleFormat::I32,
        (FORMAT_IEEE_FLOAT, 32) => SampleFormat::F32,
        (FORMAT_IEEE_FLOAT, 64) => SampleFormat::F64,
        (FORMAT_ALAW, 8) => SampleFormat::Alaw,
        (FORMAT_MULAW, 8) => SampleFormat::Ulaw,
        (FORMAT_PCM | FORMAT_IEEE_FLOAT | FORMAT_ALAW | FORMAT_MULAW, _) => {
            return Err(WavError::UnsupportedBits { tag, bits })
        }
        _ => return Err(WavError::UnsupportedFormat(tag)),
    };
    if channels == 0 {
        return Err(WavError::InvalidFmt("zero channels"));
    }
    if sample_rate == 0 {
        return Err(WavError::InvalidFmt("zero sample rate"));
    }
    if usize::from(block_align) != usize::from(channels) * format.bytes() {
        return Err(WavError::InvalidFmt(
            "block align does not match channels * bytes per sample",
        ));
    }
    Ok(Fmt {
        format,
        channels,
        sample_rate,
    })
}

/// Read and decode a WAV file; see [`parse_wav`].
pub fn read_wav(path: &Path) -> Result<Audio, WavError> {
    parse_wav(&std::fs::read(path)?)
}

/// Decode an in-memory WAV file to mono 16-bit audio.
///
/// Chunks are walked by their declared sizes (plus the pad byte after
/// odd-sized chunks); unknown chunks such as `LIST`, `fact` or `cue ` are
/// skipped. Multi-channel audio is averaged to mono. A `data` chunk whose
/// size runs past the end of the file (streaming writers that never patched
/// the header, or a cut-off download) is read up to the last whole frame,
/// as most players do; a truncated `fmt ` chunk is an error.
pub fn parse_wav(bytes: &[u8]) -> Result<Audio, WavError> {
    if bytes.len() < 4 || &bytes[0..4] != b"RIFF" {
        return Err(WavError::NotRiff);
    }
    if bytes.len() < 12 || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    // The RIFF size is ignored on purpose: it is often wrong (0 or
    // 0xFFFFFFFF from streaming writers), and the chunk walk is bounded by
    // the buffer anyway.
    let mut pos = 12;
    let mut fmt = None;
    let mut data = None;
    while bytes.len() - pos >= 8 && (fmt.is_none() || data.is_none()) {
        let id = &bytes[pos..pos + 4];
        let size = le32(bytes, pos + 4) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " if fmt.is_none() => {
                if body.len() < size {
                    return Err(WavError::TruncatedFmt);
                }
                fmt = Some(parse_fmt(body)?);
            }
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        // Chunks are word-aligned: odd sizes are followed by a pad byte.
        pos = body_start
            .saturating_add(size)
            .saturating_add(size & 1)
            .min(bytes.len());
    }
    let fmt = fmt.ok_or(WavError::FmtMissing)?;
    let data = data.ok_or(WavError::DataMissing)?;

    let channels = usize::from(fmt.channels);
    let frame_bytes = channels * fmt.format.bytes();
    let mut samples = Vec::with_capacity(data.len() / frame_bytes);
    for frame in data.chunks_exact(frame_bytes) {
        let sum: i64 = frame
            .chunks_exact(fmt.format.bytes())
            .map(|s| fmt.format.decode(s))
            .sum();
        let mean = sum / channels as i64;
        // Round from the 32-bit scale to 16 bits, saturating at full scale.
        let s = ((mean + 0x8000) >> 16).clamp(i64::from(i16::MIN), i64::from(i16::MAX));
        samples.push(s as i16);
    }
    Ok(Audio {
        sample_rate: fmt.sample_rate,
        samples,
    })
}

/// Resample by linear interpolation between neighbouring samples.
///
/// Only for converting prompts once at call setup: there is no anti-alias
/// filter, so downsampling folds content above the new Nyquist frequency
/// back into the band. The streaming resampler for live media is a
/// separate, later component. Returns the input unchanged when the rates
/// match, and an empty vector if either rate is zero. The output has
/// `floor(len * to_rate / from_rate)` samples.
pub fn resample_linear(input: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate {
        return input.to_vec();
    }
    if from_rate == 0 || to_rate == 0 || input.is_empty() {
        return Vec::new();
    }
    let (from, to) = (u64::from(from_rate), u64::from(to_rate));
    let out_len = (input.len() as u64 * to / from) as usize;
    let last = input.len() - 1;
    (0..out_len as u64)
        .map(|i| {
            // Exact rational source position: idx + frac / to.
            let num = i * from;
            let idx = (num / to) as usize;
            let frac = (num % to) as i64;
            let a = i64::from(input[idx.min(last)]);
            let b = i64::from(input[(idx + 1).min(last)]);
            let v = a + ((b - a) * frac + (to as i64) / 2).div_euclid(to as i64);
            v as i16
        })
        .collect()
}

/// Size of the canonical 16-bit PCM header this writer emits.
const HEADER_LEN: u32 = 44;
/// Largest data size whose RIFF size (data + 36) still fits in 32 bits.
const MAX_DATA_BYTES: u64 = (u32::MAX - (HEADER_LEN - 8)) as u64;

/// Streams 16-bit mono PCM to a WAV file (call recordings).
///
/// The header is written up front with zero sizes and patched by
/// [`WavWriter::finalize`]. If the writer is dropped without finalizing
/// (early return, `?`, panic unwinding) `Drop` patches the header
/// best-effort, so an interrupted recording is still a valid file.
#[derive(Debug)]
pub struct WavWriter {
    out: BufWriter<File>,
    samples_written: u64,
    /// Set once finalization has been attempted, so Drop does not repeat it.
    finished: bool,
}

impl WavWriter {
    /// Create (or truncate) `path` and write a provisional header.
    pub fn create(path: &Path, sample_rate: u32) -> Result<Self, WavError> {
        if sample_rate == 0 {
            return Err(WavError::InvalidSampleRate(sample_rate));
        }
        let byte_rate = sample_rate
            .checked_mul(2)
            .ok_or(WavError::InvalidSampleRate(sample_rate))?;
        let mut out = BufWriter::new(File::create(path)?);
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&(HEADER_LEN - 8).to_le_bytes());
        h[8..12].copy_from_slice(b"WAVE");
        h[12..16].copy_from_slice(b"fmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&FORMAT_PCM.to_le_bytes());
        h[22..24].copy_from_slice(&1u16.to_le_bytes()); // channels
        h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
        h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
        h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block align
        h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
        h[36..40].copy_from_slice(b"data");
        // h[40..44] data size stays 0 until finalize.
        out.write_all(&h)?;
        Ok(WavWriter {
            out,
            samples_written: 0,
            finished: false,
        })
    }

    /// Append samples (buffered). Fails with [`WavError::TooLarge`],
    /// writing nothing, if the file would outgrow the RIFF size fields.
    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let new_total = self.samples_written + samples.len() as u64;
        if new_total * 2 > MAX_DATA_BYTES {
            return Err(WavError::TooLarge);
        }
        // Convert through a stack buffer: one write call per 2 KiB rather
        // than per sample, and no heap allocation.
        let mut buf = [0u8; 2048];
        for chunk in samples.chunks(buf.len() / 2) {
            for (dst, s) in buf.chunks_exact_mut(2).zip(chunk) {
                dst.copy_from_slice(&s.to_le_bytes());
            }
            self.out.write_all(&buf[..chunk.len() * 2])?;
            self.samples_written += chunk.len() as u64;
        }
        Ok(())
    }

    /// Number of samples accepted so far.
    pub fn samples_written(&self) -> u64 {
        self.samples_written
    }

    /// Flush buffered samples and patch the RIFF and data sizes.
    pub fn finalize(mut self) -> Result<(), WavError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), WavError> {
        self.finished = true;
        // write_samples guarantees this fits in u32 alongside the header.
        let data_bytes = (self.samples_written * 2) as u32;
        self.out.flush()?;
        self.out.seek(SeekFrom::Start(4))?;
        self.out
            .write_all(&(data_bytes + (HEADER_LEN - 8)).to_le_bytes())?;
        self.out.seek(SeekFrom::Start(40))?;
        self.out.write_all(&data_bytes.to_le_bytes())?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        Ok(())
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: there is no way to report an error from drop.
            let _ = self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique temp path per call, removed when the guard drops.
    struct TempPath(PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    fn temp_path(tag: &str) -> TempPath {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!(
            "parley-media-wav-{}-{}-{tag}.wav",
            std::process::id(),
            n
        )))
    }

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = id.to_vec();
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits.div_ceil(8);
        let mut b = Vec::new();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        b.extend_from_slice(&align.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b
    }

    fn extensible_body(sub_tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut b = fmt_body(FORMAT_EXTENSIBLE, channels, rate, bits);
        b.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        b.extend_from_slice(&bits.to_le_bytes()); // valid bits
        b.extend_from_slice(&0u32.to_le_bytes()); // channel mask
        b.extend_from_slice(&sub_tag.to_le_bytes());
        b.extend_from_slice(&SUBFORMAT_GUID_TAIL);
        b
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
        f.extend_from_slice(b"WAVE");
        f.extend_from_slice(&body);
        f
    }

    fn wav(fmt: Vec<u8>, data: &[u8]) -> Vec<u8> {
        riff(&[chunk(b"fmt ", &fmt), chunk(b"data", data)])
    }

    #[test]
    fn pcm16_mono() {
        let data: Vec<u8> = [0i16, 1, -1, i16::MAX, i16::MIN]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(fmt_body(1, 1, 8000, 16), &data)).unwrap();
        assert_eq!(a.sample_rate, 8000);
        assert_eq!(a.samples, [0, 1, -1, i16::MAX, i16::MIN]);
    }

    #[test]
    fn pcm8_unsigned() {
        let a = parse_wav(&wav(fmt_body(1, 1, 8000, 8), &[128, 255, 0, 129])).unwrap();
        assert_eq!(a.samples, [0, 127 << 8, i16::MIN, 256]);
    }

    #[test]
    fn pcm24_and_32() {
        // 24-bit: 0x123456 -> top 16 bits 0x1234 (+ rounding of 0x56 -> down).
        let d24 = [0x56, 0x34, 0x12, 0x80, 0x00, 0x80, 0xFF, 0xFF, 0x7F];
        let a = parse_wav(&wav(fmt_body(1, 1, 16000, 24), &d24)).unwrap();
        assert_eq!(a.samples, [0x1234, i16::MIN + 1, i16::MAX]);
        let d32: Vec<u8> = [0x1234_8000i32, -0x0001_0000, i32::MAX]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(fmt_body(1, 1, 16000, 32), &d32)).unwrap();
        assert_eq!(a.samples, [0x1235, -1, i16::MAX]);
    }

    #[test]
    fn float32_and_64() {
        let d: Vec<u8> = [0.0f32, 0.5, -0.5, 1.0, -1.0, 2.0, f32::NAN]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(fmt_body(3, 1, 24000, 32), &d)).unwrap();
        assert_eq!(
            a.samples,
            [0, 16384, -16384, i16::MAX, i16::MIN, i16::MAX, 0]
        );
        let d: Vec<u8> = [0.25f64, -0.25]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(fmt_body(3, 1, 24000, 64), &d)).unwrap();
        assert_eq!(a.samples, [8192, -8192]);
    }

    #[test]
    fn g711_formats() {
        let a = parse_wav(&wav(fmt_body(7, 1, 8000, 8), &[0xFF, 0x00, 0x80])).unwrap();
        assert_eq!(a.samples, [0, -32124, 32124]);
        let a = parse_wav(&wav(fmt_body(6, 1, 8000, 8), &[0xD5, 0x55])).unwrap();
        assert_eq!(a.samples, [8, -8]);
    }

    #[test]
    fn extensible_wrapping() {
        let data: Vec<u8> = [100i16, -100]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(extensible_body(1, 1, 48000, 16), &data)).unwrap();
        assert_eq!((a.sample_rate, a.samples), (48000, vec![100, -100]));
        let d: Vec<u8> = 0.5f32.to_le_bytes().to_vec();
        let a = parse_wav(&wav(extensible_body(3, 1, 48000, 32), &d)).unwrap();
        assert_eq!(a.samples, [16384]);
        let a = parse_wav(&wav(extensible_body(7, 1, 8000, 8), &[0x80])).unwrap();
        assert_eq!(a.samples, [32124]);

        let mut bad_guid = extensible_body(1, 1, 8000, 16);
        let n = bad_guid.len();
        bad_guid[n - 1] ^= 0xFF;
        assert!(matches!(
            parse_wav(&wav(bad_guid, &[0, 0])),
            Err(WavError::UnsupportedSubFormat)
        ));
        let short = fmt_body(FORMAT_EXTENSIBLE, 1, 8000, 16);
        assert!(matches!(
            parse_wav(&wav(short, &[0, 0])),
            Err(WavError::TruncatedFmt)
        ));
        assert!(matches!(
            parse_wav(&wav(extensible_body(0x55, 1, 8000, 16), &[0, 0])),
            Err(WavError::UnsupportedFormat(0x55))
        ));
    }

    #[test]
    fn stereo_and_multichannel_downmix() {
        let data: Vec<u8> = [1000i16, 3000, -2000, -4000, i16::MAX, i16::MAX]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = parse_wav(&wav(fmt_body(1, 2, 8000, 16), &data)).unwrap();
        assert_eq!(a.samples, [2000, -3000, i16::MAX]);
        let a = parse_wav(&wav(
            fmt_body(1, 3, 8000, 8),
            &[128, 128, 131, 255, 255, 255],
        ))
        .unwrap();
        assert_eq!(a.samples, [256, 127 << 8]);
    }

    #[test]
    fn list_chunk_before_data_and_odd_sized_chunk() {
        let data: Vec<u8> = [7i16, 8].iter().flat_map(|s| s.to_le_bytes()).collect();
        let list = chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00abcde"); // 17 bytes: odd
        assert_eq!(list.len(), 8 + 17 + 1);
        let bytes = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            list,
            chunk(b"data", &data),
        ]);
        assert_eq!(parse_wav(&bytes).unwrap().samples, [7, 8]);

        // Odd-sized 8-bit data chunk followed by a trailing chunk.
        let bytes = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 8)),
            chunk(b"junk", &[1, 2, 3]),
            chunk(b"data", &[128, 129, 130]),
            chunk(b"id3 ", &[0; 5]),
        ]);
        assert_eq!(parse_wav(&bytes).unwrap().samples, [0, 256, 512]);

        // data before fmt is also accepted.
        let bytes = riff(&[
            chunk(b"data", &data),
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
        ]);
        assert_eq!(parse_wav(&bytes).unwrap().samples, [7, 8]);
    }

    #[test]
    fn oversized_data_chunk_is_clamped_to_whole_frames() {
        let mut bytes = wav(fmt_body(1, 2, 8000, 16), &[1, 0, 3, 0, 5, 0, 7, 0]);
        let n = bytes.len();
        bytes.truncate(n - 2); // half a frame cut off
        let at = bytes.len() - 6 - 4; // data size field
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&bytes).unwrap().samples, [2]);
    }

    #[test]
    fn error_cases() {
        let e = |b: &[u8]| parse_wav(b).unwrap_err().to_string();
        assert_eq!(e(b""), "not a RIFF file");
        assert_eq!(e(b"RIFX\0\0\0\0WAVE"), "not a RIFF file");
        assert_eq!(
            e(b"RIFF\0\0\0\0AVI "),
            "not a WAVE file (RIFF form type is not WAVE)"
        );
        assert_eq!(
            e(b"RIFF\0\0\0\0WAV"),
            "not a WAVE file (RIFF form type is not WAVE)"
        );
        assert_eq!(e(&riff(&[chunk(b"data", &[0, 0])])), "fmt chunk missing");
        assert_eq!(
            e(&riff(&[chunk(b"fmt ", &fmt_body(1, 1, 8000, 16))])),
            "data chunk missing"
        );
        assert_eq!(
            e(&wav(fmt_body(85, 1, 8000, 16), &[])),
            "unsupported format tag 85"
        );
        assert_eq!(
            e(&wav(fmt_body(1, 1, 8000, 12), &[])),
            "unsupported bits per sample 12 for format tag 1"
        );
        assert_eq!(
            e(&wav(fmt_body(1, 1, 8000, 16)[..14].to_vec(), &[])),
            "truncated fmt chunk"
        );
        // fmt chunk whose declared size runs past the end of the file.
        let mut t = riff(&[chunk(b"fmt ", &fmt_body(1, 1, 8000, 16))]);
        t.truncate(t.len() - 4);
        assert_eq!(e(&t), "truncated fmt chunk");
        assert_eq!(
            e(&wav(fmt_body(1, 0, 8000, 16), &[])),
            "invalid fmt chunk: zero channels"
        );
        assert_eq!(
            e(&wav(fmt_body(1, 1, 0, 16), &[])),
            "invalid fmt chunk: zero sample rate"
        );
        let mut bad_align = fmt_body(1, 2, 8000, 16);
        bad_align[12] = 3;
        assert!(e(&wav(bad_align, &[])).contains("block align"));
        assert!(matches!(
            read_wav(Path::new("/nonexistent/parley/x.wav")),
            Err(WavError::Io(_))
        ));
    }

    #[test]
    fn fuzz_no_panic() {
        let base = riff(&[
            chunk(b"fmt ", &extensible_body(1, 2, 8000, 16)),
            chunk(b"LIST", &[1, 2, 3]),
            chunk(b"data", &[1, 2, 3, 4, 5, 6, 7, 8]),
        ]);
        for n in 0..=base.len() {
            let _ = parse_wav(&base[..n]);
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3000 {
            let mut b = base.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % b.len() as u64) as usize;
                b[i] = (state >> 32) as u8;
            }
            let _ = parse_wav(&b);
        }
    }

    #[test]
    fn resample_identity_and_ratios() {
        let x: Vec<i16> = (0..100).map(|i| i * 10).collect();
        assert_eq!(resample_linear(&x, 8000, 8000), x);
        assert!(resample_linear(&x, 0, 8000).is_empty());
        assert!(resample_linear(&x, 8000, 0).is_empty());
        assert!(resample_linear(&[], 8000, 16000).is_empty());

        let up = resample_linear(&x, 8000, 16000);
        assert_eq!(up.len(), 200);
        assert_eq!(&up[..5], &[0, 5, 10, 15, 20]);
        assert_eq!(up[199], 990); // past the end holds the last sample

        let down = resample_linear(&x, 16000, 8000);
        assert_eq!(down.len(), 50);
        assert!(down.iter().enumerate().all(|(i, &v)| v == (i as i16) * 20));

        let third = resample_linear(&[0, 300, 600, -600], 3, 2);
        assert_eq!(third, [0, 450]);
        // Full-scale swing: interpolation must not overflow.
        let r = resample_linear(&[i16::MIN, i16::MAX], 1, 4);
        assert_eq!(
            r,
            [
                i16::MIN,
                -16384,
                0,
                16383,
                i16::MAX,
                i16::MAX,
                i16::MAX,
                i16::MAX
            ]
        );
    }

    #[test]
    fn resample_tracks_a_tone_at_a_non_integer_ratio() {
        // 440 Hz at 16 kHz -> 11.025 kHz. Linear interpolation error on a
        // sine is bounded by A * (2*pi*f/fs)^2 / 8, about 37 here.
        let tone = |i: usize, fs: f64| {
            10000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / fs).sin()
        };
        let src: Vec<i16> = (0..16000)
            .map(|i| tone(i, 16000.0).round() as i16)
            .collect();
        let out = resample_linear(&src, 16000, 11025);
        assert_eq!(out.len(), 11025);
        for (i, &v) in out.iter().enumerate() {
            let ideal = tone(i, 11025.0);
            assert!(
                (f64::from(v) - ideal).abs() < 40.0,
                "sample {i}: {v} vs {ideal}"
            );
        }
    }

    #[test]
    fn writer_round_trip() {
        let p = temp_path("rt");
        let samples: Vec<i16> = (0..5000)
            .map(|i| ((i * 37) % 65536 - 32768) as i16)
            .collect();
        let mut w = WavWriter::create(&p.0, 16000).unwrap();
        w.write_samples(&samples[..1234]).unwrap();
        w.write_samples(&[]).unwrap();
        w.write_samples(&samples[1234..]).unwrap();
        assert_eq!(w.samples_written(), 5000);
        w.finalize().unwrap();

        let bytes = std::fs::read(&p.0).unwrap();
        assert_eq!(bytes.len(), 44 + 10000);
        assert_eq!(le32(&bytes, 4), 36 + 10000);
        assert_eq!(le32(&bytes, 40), 10000);
        let a = read_wav(&p.0).unwrap();
        assert_eq!(a.sample_rate, 16000);
        assert_eq!(a.samples, samples);
    }

    #[test]
    fn writer_empty_file_is_valid() {
        let p = temp_path("empty");
        WavWriter::create(&p.0, 8000).unwrap().finalize().unwrap();
        let a = read_wav(&p.0).unwrap();
        assert_eq!((a.sample_rate, a.samples.len()), (8000, 0));
    }

    #[test]
    fn writer_drop_patches_header() {
        let p = temp_path("drop");
        {
            let mut w = WavWriter::create(&p.0, 8000).unwrap();
            w.write_samples(&[1, 2, 3]).unwrap();
        }
        let bytes = std::fs::read(&p.0).unwrap();
        assert_eq!(le32(&bytes, 4), 36 + 6);
        assert_eq!(le32(&bytes, 40), 6);
        assert_eq!(read_wav(&p.0).unwrap().samples, [1, 2, 3]);
    }

    #[test]
    fn writer_rejects_bad_rate_and_path() {
        let p = temp_path("rate");
        assert!(matches!(
            WavWriter::create(&p.0, 0),
            Err(WavError::InvalidSampleRate(0))
        ));
        assert!(matches!(
            WavWriter::create(&p.0, u32::MAX),
            Err(WavError::InvalidSampleRate(_))
        ));
        assert!(matches!(
            WavWriter::create(Path::new("/nonexistent/parley/out.wav"), 8000),
            Err(WavError::Io(_))
        ));
    }
}
