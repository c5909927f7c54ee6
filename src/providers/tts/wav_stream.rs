//! A WAV header parser for audio that is still being written (espeak-ng's `--stdout`): the
//! RIFF and `data` sizes may be placeholders (0, 0xFFFFFFFF, or espeak's 0x7FFFF000), so the
//! header is found by walking the chunks, and the PCM is whatever follows `data`.

/// The header's bytes are kept until `data` is found; a stream without one within this
/// many bytes is not a WAV stream.
const MAX_HEADER: usize = 64 * 1024;

/// What the `fmt ` chunk says (16-bit PCM only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WavFormat {
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Default)]
pub(super) struct WavStream {
    /// Bytes of the header seen so far (until `data` is found).
    header: Vec<u8>,
    format: Option<WavFormat>,
    in_data: bool,
    /// Bytes of `data` still expected when its size is real; `None` when it is a
    /// placeholder (then the data runs to the end of the stream).
    data_left: Option<u64>,
}

impl WavStream {
    pub(super) fn new() -> WavStream {
        WavStream::default()
    }

    /// The format, once the header up to `data` has been read.
    pub(super) fn format(&self) -> Option<WavFormat> {
        self.format.filter(|_| self.in_data)
    }

    /// Feeds the next bytes of the stream; returns the PCM bytes among them (possibly none,
    /// while the header is incomplete).
    pub(super) fn push<'a>(&'a mut self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        if self.in_data {
            return Ok(self.take_data(bytes));
        }
        self.header.extend_from_slice(bytes);
        let Some(start) = self.parse_header()? else {
            if self.header.len() > MAX_HEADER {
                return Err(format!("no `data` chunk in the first {MAX_HEADER} bytes"));
            }
            return Ok(&[]);
        };
        // Move what followed the header out, then limit it like any later bytes.
        let rest = self.header.split_off(start);
        self.header = rest;
        let n = self.data_limit(self.header.len());
        self.header.truncate(n);
        Ok(&self.header)
    }

    fn take_data<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let n = self.data_limit(bytes.len());
        &bytes[..n]
    }

    /// How many of the next `available` bytes belong to `data`.
    fn data_limit(&mut self, available: usize) -> usize {
        match self.data_left.as_mut() {
            None => available,
            Some(left) => {
                let n = (*left).min(available as u64) as usize;
                *left -= n as u64;
                n
            }
        }
    }

    /// Walks the chunks; `Some(offset of the PCM)` once `data` is reached.
    fn parse_header(&mut self) -> Result<Option<usize>, String> {
        let h = &self.header;
        if h.len() < 12 {
            return Ok(None);
        }
        if &h[0..4] != b"RIFF" || &h[8..12] != b"WAVE" {
            return Err("not a RIFF/WAVE stream".into());
        }
        let mut at = 12;
        loop {
            if h.len() < at + 8 {
                return Ok(None);
            }
            let id = &h[at..at + 4];
            let size = u32::from_le_bytes([h[at + 4], h[at + 5], h[at + 6], h[at + 7]]);
            let body = at + 8;
            if id == b"data" {
                if self.format.is_none() {
                    return Err("`data` comes before `fmt `".into());
                }
                // 0 and 0xFFFFFFFF are what streaming writers put there; espeak-ng writes a
                // huge size that is an upper bound, which is harmless as a limit.
                self.data_left = match size {
                    0 | u32::MAX => None,
                    n => Some(u64::from(n)),
                };
                self.in_data = true;
                return Ok(Some(body));
            }
            if size == u32::MAX {
                return Err(format!(
                    "chunk {:?} has no size",
                    String::from_utf8_lossy(id)
                ));
            }
            // Chunks are padded to an even length.
            let end = body + size as usize + (size as usize & 1);
            if id == b"fmt " {
                if h.len() < body + 16 {
                    return Ok(None);
                }
                self.format = Some(parse_fmt(&h[body..body + size.min(40) as usize])?);
            }
            if h.len() < end {
                return Ok(None);
            }
            at = end;
        }
    }
}

fn parse_fmt(b: &[u8]) -> Result<WavFormat, String> {
    if b.len() < 16 {
        return Err(format!("`fmt ` chunk of {} bytes", b.len()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let bits = u16_at(14);
    // 1: PCM; 0xFFFE: WAVE_FORMAT_EXTENSIBLE (PCM subformat assumed from 16 bits).
    if (tag != 1 && tag != 0xFFFE) || bits != 16 {
        return Err(format!(
            "format tag {tag} with {bits}-bit samples (16-bit PCM needed)"
        ));
    }
    if channels != 1 {
        return Err(format!("{channels} channels (mono needed)"));
    }
    Ok(WavFormat {
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(riff: u32, data: u32, extra: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&22_050u32.to_le_bytes());
        h.extend_from_slice(&44_100u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(extra);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data.to_le_bytes());
        h
    }

    fn feed(stream: &[u8], step: usize) -> Result<(Vec<u8>, Option<WavFormat>), String> {
        let mut w = WavStream::new();
        let mut pcm = Vec::new();
        for chunk in stream.chunks(step) {
            pcm.extend_from_slice(w.push(chunk)?);
        }
        Ok((pcm, w.format()))
    }

    #[test]
    fn placeholder_sizes_stream_to_the_end_in_any_chunking() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(5001).collect();
        for sizes in [
            (0xFFFF_FFFF, 0xFFFF_FFFF),
            (0, 0),
            (0x7FFF_F024, 0x7FFF_F000),
        ] {
            let mut s = header(sizes.0, sizes.1, &[]);
            s.extend_from_slice(&payload);
            for step in [1, 3, 44, 45, 4096] {
                let (pcm, format) = feed(&s, step).unwrap();
                assert_eq!(pcm, payload, "step {step}");
                assert_eq!(
                    format,
                    Some(WavFormat {
                        sample_rate: 22_050,
                        channels: 1
                    })
                );
            }
        }
    }

    #[test]
    fn other_chunks_are_skipped_and_a_real_data_size_is_a_limit() {
        // An odd-sized LIST chunk (padded) before data, and trailing bytes after it.
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc\0"].concat();
        let mut s = header(100, 4, &list);
        s.extend_from_slice(&[1, 2, 3, 4, 9, 9, 9]);
        for step in [1, 5, 100] {
            assert_eq!(feed(&s, step).unwrap().0, vec![1, 2, 3, 4]);
        }
    }

    #[test]
    fn non_wav_and_unsupported_formats_are_errors() {
        assert!(feed(b"ID3\x03 not a wave file at all", 8).is_err());
        let mut s = header(0, 0, &[]);
        s[34] = 8; // bits per sample
        assert!(feed(&s, 64).unwrap_err().contains("16-bit"));
        let mut s = header(0, 0, &[]);
        s[22] = 2; // channels
        assert!(feed(&s, 64).unwrap_err().contains("mono"));
    }

    #[test]
    fn nothing_comes_out_before_the_header_is_complete() {
        let s = header(0, 0, &[]);
        let mut w = WavStream::new();
        assert!(w.push(&s[..30]).unwrap().is_empty());
        assert_eq!(w.format(), None);
        assert!(w.push(&s[30..]).unwrap().is_empty());
        assert!(w.format().is_some());
    }
}
