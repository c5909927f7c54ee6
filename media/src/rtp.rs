//! RTP packet parsing and serialisation (RFC 3550 §5.1), zero-copy.
//!
//! The media path receives a UDP datagram into a reusable buffer, calls
//! [`parse`] to get borrowed views of the header fields and payload, and
//! sends by filling a reusable buffer with [`write_packet`]. Nothing here
//! allocates, and every malformed input yields an [`RtpError`] instead of a
//! panic, because the bytes come straight off the network from an
//! untrusted peer.

use thiserror::Error;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;
/// The only RTP version in use (RFC 3550).
pub const RTP_VERSION: u8 = 2;

/// Why a buffer is not a valid RTP packet, or a packet cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// The buffer ends before the part of the header that was being read.
    #[error("RTP packet too short: need {needed} bytes, have {actual}")]
    TooShort {
        /// Bytes required to read the header part being parsed.
        needed: usize,
        /// Bytes actually present.
        actual: usize,
    },
    /// The version field is not 2.
    #[error("unsupported RTP version {0} (expected 2)")]
    BadVersion(u8),
    /// The padding bit is set but the padding count is zero or longer than
    /// the space left after the header.
    #[error("invalid RTP padding length {padding} with {available} bytes after the header")]
    BadPadding {
        /// The padding count from the last byte.
        padding: u8,
        /// Bytes available for payload plus padding.
        available: usize,
    },
    /// A payload type above 127 was given to the writer.
    #[error("RTP payload type {0} out of range 0..=127")]
    BadPayloadType(u8),
    /// The output buffer cannot hold the packet being written.
    #[error("output buffer too small: need {needed} bytes, have {actual}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available in the output buffer.
        actual: usize,
    },
}

/// The per-packet fields of the fixed RTP header that a media stream cares
/// about. Version is always 2; CSRCs, extension and padding are described
/// by [`RtpPacket`] on receive and never emitted by [`write_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// Marker bit; for audio, set on the first packet of a talkspurt.
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number, +1 per packet, wrapping.
    pub sequence: u16,
    /// Media timestamp in clock-rate units, wrapping.
    pub timestamp: u32,
    /// Synchronisation source identifier.
    pub ssrc: u32,
}

/// A header extension (RFC 3550 §5.3.1), kept as raw bytes because the
/// engine does not interpret any extension yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The 16-bit profile-defined identifier (e.g. 0xBEDE for RFC 8285).
    pub profile: u16,
    /// Extension body, `length * 4` bytes, excluding the 4-byte preamble.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Fixed header fields.
    pub header: RtpHeader,
    /// Number of contributing sources (0..=15).
    pub csrc_count: u8,
    /// The payload, with any padding removed.
    pub payload: &'a [u8],
    /// Raw CSRC list, `4 * csrc_count` bytes; use [`RtpPacket::csrc`].
    pub csrc_bytes: &'a [u8],
    /// Header extension, if the X bit was set.
    pub extension: Option<RtpExtension<'a>>,
    /// Padding bytes stripped from the end (0 when the P bit was clear).
    pub padding_len: u8,
}

impl RtpPacket<'_> {
    /// The `index`-th contributing source, or `None` past `csrc_count`.
    pub fn csrc(&self, index: usize) -> Option<u32> {
        let start = index.checked_mul(4)?;
        let b = self.csrc_bytes.get(start..start.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn need(buf: &[u8], needed: usize) -> Result<(), RtpError> {
    if buf.len() < needed {
        Err(RtpError::TooShort {
            needed,
            actual: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Parse an RTP packet without copying.
///
/// Validates the version, that the CSRC list and header extension fit in
/// the buffer, and that the padding count (when the P bit is set) is at
/// least 1 and no larger than what follows the header.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    need(buf, RTP_HEADER_LEN)?;
    let b0 = buf[0];
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let csrc_count = b0 & 0x0F;
    let header = RtpHeader {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7F,
        sequence: be16(buf, 2),
        timestamp: be32(buf, 4),
        ssrc: be32(buf, 8),
    };

    let csrc_end = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
    need(buf, csrc_end)?;
    let csrc_bytes = &buf[RTP_HEADER_LEN..csrc_end];

    let mut offset = csrc_end;
    let extension = if has_extension {
        need(buf, offset + 4)?;
        let profile = be16(buf, offset);
        let words = usize::from(be16(buf, offset + 2));
        let data_start = offset + 4;
        let data_end = data_start + 4 * words;
        need(buf, data_end)?;
        offset = data_end;
        Some(RtpExtension {
            profile,
            data: &buf[data_start..data_end],
        })
    } else {
        None
    };

    let mut end = buf.len();
    let mut padding_len = 0;
    if has_padding {
        let available = end - offset;
        // `available == 0` means there is no byte to hold the count.
        let padding = if available == 0 { 0 } else { buf[end - 1] };
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpError::BadPadding { padding, available });
        }
        padding_len = padding;
        end -= usize::from(padding);
    }

    Ok(RtpPacket {
        header,
        csrc_count,
        payload: &buf[offset..end],
        csrc_bytes,
        extension,
        padding_len,
    })
}

/// Serialise a packet with a plain 12-byte header (no CSRC, extension or
/// padding) followed by `payload` into the front of `out`.
///
/// Returns the number of bytes written. Fails without writing if the
/// payload type does not fit in 7 bits or `out` is too small.
pub fn write_packet(header: &RtpHeader, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
    if header.payload_type > 0x7F {
        return Err(RtpError::BadPayloadType(header.payload_type));
    }
    let total = RTP_HEADER_LEN + payload.len();
    if out.len() < total {
        return Err(RtpError::BufferTooSmall {
            needed: total,
            actual: out.len(),
        });
    }
    out[0] = RTP_VERSION << 6;
    out[1] = (u8::from(header.marker) << 7) | header.payload_type;
    out[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    out[RTP_HEADER_LEN..total].copy_from_slice(payload);
    Ok(total)
}

/// True if a datagram on an rtcp-mux port is RTCP rather than RTP.
///
/// RFC 5761 §4: the second octet of an RTCP packet is its packet type, in
/// 192..=223 for every defined type (SR 200, RR 201, ...). In RTP that
/// octet is marker + payload type, and payload types 64..=95 are forbidden
/// on a muxed port precisely so this test is unambiguous. The version field
/// must also be 2, which rejects STUN (first bits 00) and DTLS (20..=63).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf[0] >> 6 == RTP_VERSION && (192..=223).contains(&buf[1])
}

/// Generates consecutive headers for one outgoing stream so that sequence
/// numbers and timestamps advance (and wrap) correctly.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
}

impl RtpSender {
    /// Start a stream. RFC 3550 recommends random initial sequence number
    /// and timestamp; the caller supplies them so this type stays pure.
    /// `payload_type` is masked to 7 bits.
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16, initial_ts: u32) -> Self {
        RtpSender {
            ssrc,
            payload_type: payload_type & 0x7F,
            sequence: initial_seq,
            timestamp: initial_ts,
        }
    }

    /// Header for the next packet, carrying `samples` samples (clock
    /// ticks). The returned header uses the current sequence/timestamp,
    /// then both advance with wrap-around.
    pub fn next_header(&mut self, samples: u32, marker: bool) -> RtpHeader {
        let h = RtpHeader {
            marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        h
    }

    /// Switch payload type mid-stream (e.g. to RFC 4733 telephone-event
    /// for DTMF and back). Masked to 7 bits.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type & 0x7F;
    }

    /// Advance the timestamp without sending, e.g. across silence that is
    /// not transmitted, so the receiver sees the real elapsed time.
    pub fn skip_samples(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The payload type the next header will carry.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The sequence number the next header will carry.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next header will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0x1234,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        }
    }

    #[test]
    fn writes_known_bytes() {
        let mut out = [0u8; 32];
        let n = write_packet(&sample_header(), &[0xAA, 0xBB], &mut out).unwrap();
        assert_eq!(n, 14);
        assert_eq!(
            out[..n],
            [0x80, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB]
        );
    }

    #[test]
    fn parses_known_bytes() {
        let bytes = [
            0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xA0, 0xCA, 0xFE, 0xBA, 0xBE, 0xFF, 0xFF,
        ];
        let p = parse(&bytes).unwrap();
        assert_eq!(
            p.header,
            RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: 1,
                timestamp: 160,
                ssrc: 0xCAFE_BABE
            }
        );
        assert_eq!(p.payload, &[0xFF, 0xFF]);
        assert_eq!(p.csrc_count, 0);
        assert_eq!(p.extension, None);
        assert_eq!(p.padding_len, 0);
    }

    #[test]
    fn round_trip() {
        let payload: Vec<u8> = (0..160u32).map(|i| i as u8).collect();
        let mut out = [0u8; 200];
        for h in [
            sample_header(),
            RtpHeader::default(),
            RtpHeader {
                marker: false,
                payload_type: 127,
                sequence: u16::MAX,
                timestamp: u32::MAX,
                ssrc: u32::MAX,
            },
        ] {
            let n = write_packet(&h, &payload, &mut out).unwrap();
            let p = parse(&out[..n]).unwrap();
            assert_eq!(p.header, h);
            assert_eq!(p.payload, &payload[..]);
        }
    }

    #[test]
    fn empty_payload_is_valid() {
        let mut out = [0u8; 12];
        assert_eq!(write_packet(&sample_header(), &[], &mut out), Ok(12));
        assert_eq!(parse(&out).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut b = vec![0xB2, 0x60]; // V=2 P=1 X=1 CC=2; M=0 PT=96
        b.extend_from_slice(&[0x00, 0x07, 0, 0, 0x03, 0x20, 0x11, 0x22, 0x33, 0x44]);
        b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        b.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAB, 0x00, 0x00]); // ext
        b.extend_from_slice(&[9, 8, 7]); // payload
        b.extend_from_slice(&[0, 0, 3]); // padding, count 3
        let p = parse(&b).unwrap();
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(p.header.sequence, 7);
        assert_eq!(p.header.timestamp, 800);
        assert_eq!(p.csrc_count, 2);
        assert_eq!(p.csrc(0), Some(1));
        assert_eq!(p.csrc(1), Some(2));
        assert_eq!(p.csrc(2), None);
        assert_eq!(p.csrc(usize::MAX), None);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xBEDE);
        assert_eq!(ext.data, &[0x10, 0xAB, 0x00, 0x00]);
        assert_eq!(p.payload, &[9, 8, 7]);
        assert_eq!(p.padding_len, 3);
    }

    #[test]
    fn padding_may_consume_whole_payload() {
        let mut b = [0u8; 16];
        b[0] = 0xA0; // V=2 P=1
        b[15] = 4;
        let p = parse(&b).unwrap();
        assert!(p.payload.is_empty());
        assert_eq!(p.padding_len, 4);
    }

    #[test]
    fn error_cases() {
        let good = {
            let mut out = [0u8; 16];
            write_packet(&sample_header(), &[1, 2, 3, 4], &mut out).unwrap();
            out
        };
        assert_eq!(
            parse(&good[..11]),
            Err(RtpError::TooShort {
                needed: 12,
                actual: 11
            })
        );
        assert_eq!(
            parse(&[]),
            Err(RtpError::TooShort {
                needed: 12,
                actual: 0
            })
        );

        for v in [0u8, 1, 3] {
            let mut b = good;
            b[0] = (b[0] & 0x3F) | (v << 6);
            assert_eq!(parse(&b), Err(RtpError::BadVersion(v)));
        }

        // CC=2 needs 20 bytes, only 16.
        let mut b = good;
        b[0] |= 0x02;
        assert_eq!(
            parse(&b),
            Err(RtpError::TooShort {
                needed: 20,
                actual: 16
            })
        );

        // Extension bit set; preamble fits (16 bytes) but declared 1 word does not.
        let mut b = good;
        b[0] |= 0x10;
        b[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x01]);
        assert_eq!(
            parse(&b),
            Err(RtpError::TooShort {
                needed: 20,
                actual: 16
            })
        );
        // Extension preamble itself missing.
        let mut b = [0u8; 14];
        b[0] = 0x90;
        assert_eq!(
            parse(&b),
            Err(RtpError::TooShort {
                needed: 16,
                actual: 14
            })
        );

        // Padding count zero.
        let mut b = good;
        b[0] |= 0x20;
        b[15] = 0;
        assert_eq!(
            parse(&b),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 4
            })
        );
        // Padding count larger than what follows the header.
        b[15] = 5;
        assert_eq!(
            parse(&b),
            Err(RtpError::BadPadding {
                padding: 5,
                available: 4
            })
        );
        // Padding bit with no bytes after the header at all.
        let mut b = [0u8; 12];
        b[0] = 0xA0;
        assert_eq!(
            parse(&b),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 0
            })
        );
    }

    #[test]
    fn write_errors() {
        let mut small = [0u8; 13];
        assert_eq!(
            write_packet(&sample_header(), &[1, 2], &mut small),
            Err(RtpError::BufferTooSmall {
                needed: 14,
                actual: 13
            })
        );
        assert_eq!(small, [0u8; 13], "nothing written on error");
        let h = RtpHeader {
            payload_type: 128,
            ..sample_header()
        };
        assert_eq!(
            write_packet(&h, &[], &mut [0u8; 12]),
            Err(RtpError::BadPayloadType(128))
        );
    }

    #[test]
    fn rtcp_detection() {
        // RTCP receiver report header: V=2, RC=0, PT=201, length=1.
        assert!(is_rtcp(&[0x80, 201, 0x00, 0x01, 0, 0, 0, 1]));
        assert!(is_rtcp(&[0x81, 200, 0x00, 0x06]));
        assert!(is_rtcp(&[0x80, 192, 0, 0]));
        assert!(is_rtcp(&[0x80, 223, 0, 0]));
        assert!(!is_rtcp(&[0x80, 191, 0, 0]));
        assert!(!is_rtcp(&[0x80, 224, 0, 0]));
        // RTP PCMU / PCMA with and without marker, and dynamic PT 96/101.
        let mut out = [0u8; 12];
        for (pt, m) in [
            (0, false),
            (0, true),
            (8, true),
            (96, true),
            (101, false),
            (127, true),
        ] {
            let h = RtpHeader {
                marker: m,
                payload_type: pt,
                ..sample_header()
            };
            write_packet(&h, &[], &mut out).unwrap();
            assert!(!is_rtcp(&out), "pt {pt} marker {m}");
        }
        assert!(!is_rtcp(&[0x80, 200]));
        assert!(!is_rtcp(&[]));
        assert!(!is_rtcp(&[0x00, 200, 0, 0]), "STUN-like first byte");
    }

    #[test]
    fn sender_advances_and_wraps() {
        let mut s = RtpSender::new(42, 0, u16::MAX - 1, u32::MAX - 100);
        let h1 = s.next_header(160, true);
        assert_eq!(
            (h1.sequence, h1.timestamp, h1.marker),
            (u16::MAX - 1, u32::MAX - 100, true)
        );
        assert_eq!((h1.ssrc, h1.payload_type), (42, 0));
        let h2 = s.next_header(160, false);
        assert_eq!(
            (h2.sequence, h2.timestamp, h2.marker),
            (u16::MAX, 59, false)
        );
        let h3 = s.next_header(160, false);
        assert_eq!((h3.sequence, h3.timestamp), (0, 219));
        s.set_payload_type(101);
        s.skip_samples(1000);
        let h4 = s.next_header(0, true);
        assert_eq!((h4.payload_type, h4.sequence, h4.timestamp), (101, 1, 1379));
        assert_eq!(
            (s.sequence(), s.timestamp(), s.payload_type(), s.ssrc()),
            (2, 1379, 101, 42)
        );
        s.set_payload_type(0xFF);
        assert_eq!(s.payload_type(), 0x7F);
        assert_eq!(RtpSender::new(1, 200, 0, 0).payload_type(), 200 & 0x7F);
    }

    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn fuzz_no_panic() {
        let mut b = vec![0xB3, 0xE0]; // V=2 P X CC=3, M PT=96
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
        b.extend_from_slice(&[0x55; 20]);
        b.extend_from_slice(&[0, 2]);
        assert!(parse(&b).is_ok());
        for n in 0..b.len() {
            let _ = parse(&b[..n]);
            let _ = is_rtcp(&b[..n]);
        }

        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut buf = [0u8; 96];
        let mut ok = 0;
        for _ in 0..5000 {
            let len = (xorshift(&mut state) % 97) as usize;
            for byte in buf.iter_mut().take(len) {
                *byte = xorshift(&mut state) as u8;
            }
            // Bias toward version 2 so the deeper paths get exercised.
            if len > 0 && xorshift(&mut state) & 1 == 0 {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            if let Ok(p) = parse(&buf[..len]) {
                ok += 1;
                assert!(p.payload.len() <= len);
                assert_eq!(p.csrc_bytes.len(), 4 * usize::from(p.csrc_count));
            }
            let _ = is_rtcp(&buf[..len]);
        }
        assert!(ok > 100, "fuzz never reached a successful parse ({ok})");
    }
}
