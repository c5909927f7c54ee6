//! RTCP (RFC 3550 §6): compound packets, reception statistics and the
//! per-stream report session.
//!
//! * [`parse_compound`] validates a received datagram (RFC 3550 A.2) and
//!   [`Compound::packets`] walks it as borrowed [`RtcpPacket`] views: SR,
//!   RR, SDES, BYE; any other packet type (APP, feedback, XR, ...) comes out
//!   as [`RtcpPacket::Other`] and can be ignored. Nothing is copied.
//! * [`RtcpWriter`] serialises SR, RR, SDES (CNAME) and BYE into a caller
//!   buffer.
//! * [`ReceptionStats`] is the receive side of one source: sequence
//!   validation, extended highest sequence and loss (RFC 3550 A.1, A.3)
//!   and interarrival jitter (A.8).
//! * [`RtcpSession`] ties them together for one call's stream: when the
//!   next report is due, SR or RR with a CNAME, and round-trip time from
//!   LSR/DLSR (§6.4.1).
//!
//! All of it is sans-I/O: the caller passes `now` (an [`Instant`]), the NTP
//! wall-clock time as a 64-bit NTP timestamp and arrival times in RTP
//! clock units. No clock is read, nothing allocates per packet, and no
//! input panics.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Packet type of a sender report.
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of a source description.
pub const PT_SDES: u8 = 202;
/// Packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type of an application-defined packet.
pub const PT_APP: u8 = 204;
/// SDES item type of the canonical name.
pub const SDES_CNAME: u8 = 1;
/// Most report blocks one SR or RR can carry (5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;
/// Size of one report block on the wire.
pub const REPORT_BLOCK_LEN: usize = 24;

const HEADER_LEN: usize = 4;
const SENDER_INFO_LEN: usize = 20;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why RTCP data cannot be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// The data ends before a header or field that must be there.
    #[error("RTCP data too short: need {needed} bytes, have {actual}")]
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The version field is not 2.
    #[error("unsupported RTCP version {0} (expected 2)")]
    BadVersion(u8),
    /// A length field points past the end of the datagram.
    #[error("RTCP length field says {declared} bytes but only {available} remain")]
    BadLength {
        /// Packet length from the header, in bytes.
        declared: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// Padding on a packet other than the last, or a padding count of zero
    /// or larger than the packet body.
    #[error("invalid RTCP padding")]
    BadPadding,
    /// A compound packet must start with an SR or RR (RFC 3550 §6.1).
    #[error("compound RTCP must start with SR or RR, found packet type {0}")]
    NotReportFirst(u8),
    /// A packet body is too short for the entries its header announces.
    #[error(
        "RTCP packet type {packet_type} announces {count} entries its {len}-byte body cannot hold"
    )]
    Truncated {
        /// The packet type.
        packet_type: u8,
        /// The count field (report blocks, chunks or sources).
        count: u8,
        /// Body length in bytes.
        len: usize,
    },
    /// More than 31 report blocks or BYE sources for one packet.
    #[error("{0} entries exceed the 31 one RTCP packet can carry")]
    TooManyEntries(usize),
    /// An SDES item or BYE reason longer than 255 bytes.
    #[error("RTCP text of {0} bytes exceeds 255")]
    TextTooLong(usize),
    /// The output buffer cannot hold what is being written.
    #[error("output buffer too small: need {needed} bytes, have {actual}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// The NTP timestamp (seconds since 1900 in the high 32 bits, fraction in
/// the low 32) for a wall-clock time given as time since the Unix epoch.
pub fn ntp_from_unix(since_unix_epoch: Duration) -> u64 {
    let secs = since_unix_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp, the form used by LSR and by the
/// RTT computation (units of 1/65536 s).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

fn duration_to_q16(d: Duration) -> u32 {
    let frac = (u64::from(d.subsec_nanos()) << 16) / 1_000_000_000;
    let units = d.as_secs().saturating_mul(65536).saturating_add(frac);
    units.min(u64::from(u32::MAX)) as u32
}

fn q16_to_duration(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65536)
}

// ---------------------------------------------------------------------------
// Packet views
// ---------------------------------------------------------------------------

/// The sender-info section of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wall-clock time the report was sent (64-bit NTP format).
    pub ntp_timestamp: u64,
    /// RTP timestamp corresponding to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// RTP data packets sent since the stream started.
    pub packet_count: u32,
    /// RTP payload octets sent since the stream started.
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Loss since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    /// Cycles (high 16 bits) and highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from
    /// the source (0 if none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s (0 if none).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let lost_raw = be32(b, 4) & 0x00FF_FFFF;
        // Sign-extend the 24-bit field.
        let cumulative_lost = ((lost_raw << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b.get(4).copied().unwrap_or(0),
            cumulative_lost,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    fn write(&self, out: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        let words = [
            self.ssrc,
            (u32::from(self.fraction_lost) << 24) | lost,
            self.extended_highest_seq,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        ];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        if self.data.len() < REPORT_BLOCK_LEN {
            return None;
        }
        let (block, rest) = self.data.split_at(REPORT_BLOCK_LEN);
        self.data = rest;
        Some(ReportBlock::parse(block))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// A sender report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport<'a> {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// What the sender has sent.
    pub info: SenderInfo,
    blocks: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// The reception report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks { data: self.blocks }
    }
}

/// A receiver report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    /// SSRC of the reporter.
    pub ssrc: u32,
    blocks: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// The reception report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks { data: self.blocks }
    }
}

/// A source description packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes<'a> {
    count: u8,
    data: &'a [u8],
}

impl<'a> Sdes<'a> {
    /// The chunks, one per described source.
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            left: self.count,
            data: self.data,
        }
    }
}

/// Iterator over SDES chunks.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    left: u8,
    data: &'a [u8],
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        let (ssrc, items, consumed) = sdes_chunk(self.data).ok()?;
        self.left -= 1;
        self.data = self.data.get(consumed..).unwrap_or(&[]);
        Some(SdesChunk { ssrc, items })
    }
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// The SSRC or CSRC described.
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// The items of the chunk.
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems { data: self.items }
    }

    /// The CNAME item's value, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.value)
    }
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Item type (1 = CNAME, 2 = NAME, ...).
    pub kind: u8,
    /// Item text, UTF-8 per RFC 3550 but not checked here.
    pub value: &'a [u8],
}

/// Iterator over the items of an SDES chunk.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        let kind = *self.data.first()?;
        if kind == 0 {
            return None;
        }
        let len = usize::from(*self.data.get(1)?);
        let value = self.data.get(2..2 + len)?;
        self.data = self.data.get(2 + len..).unwrap_or(&[]);
        Some(SdesItem { kind, value })
    }
}

/// Split one SDES chunk off the front of `data`: (ssrc, item bytes,
/// bytes consumed including null terminator and alignment padding).
fn sdes_chunk(data: &[u8]) -> Result<(u32, &[u8], usize), ()> {
    if data.len() < 4 {
        return Err(());
    }
    let ssrc = be32(data, 0);
    let mut pos = 4;
    loop {
        match data.get(pos) {
            // Body ends without a null item: accept, the list ends here.
            None => return Ok((ssrc, &data[4..pos], pos)),
            Some(0) => {
                let items = &data[4..pos];
                // Skip the null octet(s) up to the next 32-bit boundary.
                let end = ((pos + 1) + 3) & !3;
                return Ok((ssrc, items, end.min(data.len())));
            }
            Some(_) => {
                let len = usize::from(*data.get(pos + 1).ok_or(())?);
                if pos + 2 + len > data.len() {
                    return Err(());
                }
                pos += 2 + len;
            }
        }
    }
}

/// A goodbye packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye<'a> {
    sources: &'a [u8],
    /// The optional reason for leaving.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// The SSRC/CSRCs that are leaving.
    pub fn sources(&self) -> impl Iterator<Item = u32> + 'a {
        self.sources.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// SR (200).
    SenderReport(SenderReport<'a>),
    /// RR (201).
    ReceiverReport(ReceiverReport<'a>),
    /// SDES (202).
    SourceDescription(Sdes<'a>),
    /// BYE (203).
    Bye(Bye<'a>),
    /// Any other packet type, passed over intact.
    Other {
        /// The packet type.
        packet_type: u8,
        /// The 5-bit count/subtype field.
        count: u8,
        /// The body after the 4-byte header, padding removed.
        body: &'a [u8],
    },
}

/// A validated compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    data: &'a [u8],
}

impl<'a> Compound<'a> {
    /// The packets, in order.
    pub fn packets(&self) -> Packets<'a> {
        Packets { data: self.data }
    }
}

/// Iterator over the packets of a [`Compound`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = RtcpPacket<'a>;

    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        if self.data.is_empty() {
            return None;
        }
        match split_packet(self.data) {
            Ok((packet, rest)) => {
                self.data = rest;
                Some(packet)
            }
            Err(_) => {
                // Cannot happen after `parse_compound`; stop rather than panic.
                self.data = &[];
                None
            }
        }
    }
}

/// Validate a compound RTCP datagram (RFC 3550 A.2): every packet has
/// version 2, lengths add up exactly to the datagram, padding appears only
/// on the last packet, the first packet is an SR or RR, and every SR, RR,
/// SDES and BYE body holds what its header announces.
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtcpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtcpError::TooShort {
            needed: HEADER_LEN,
            actual: buf.len(),
        });
    }
    let first_type = buf[1];
    let mut rest = buf;
    let mut first = true;
    while !rest.is_empty() {
        let (_, next) = split_packet(rest)?;
        if first && first_type != PT_SR && first_type != PT_RR {
            return Err(RtcpError::NotReportFirst(first_type));
        }
        first = false;
        rest = next;
    }
    Ok(Compound { data: buf })
}

/// Parse the packet at the front of `buf`; return it and what follows.
fn split_packet(buf: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), RtcpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtcpError::TooShort {
            needed: HEADER_LEN,
            actual: buf.len(),
        });
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let padded = buf[0] & 0x20 != 0;
    let count = buf[0] & 0x1F;
    let packet_type = buf[1];
    let total = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    if total > buf.len() {
        return Err(RtcpError::BadLength {
            declared: total,
            available: buf.len(),
        });
    }
    let (packet, rest) = buf.split_at(total);
    let mut body = &packet[HEADER_LEN..];
    if padded {
        if !rest.is_empty() {
            return Err(RtcpError::BadPadding);
        }
        let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = &body[..body.len() - pad];
    }
    let truncated = RtcpError::Truncated {
        packet_type,
        count,
        len: body.len(),
    };
    let blocks_len = usize::from(count) * REPORT_BLOCK_LEN;
    let parsed = match packet_type {
        PT_SR => {
            let need = 4 + SENDER_INFO_LEN + blocks_len;
            if body.len() < need {
                return Err(truncated);
            }
            let ntp = (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8));
            RtcpPacket::SenderReport(SenderReport {
                ssrc: be32(body, 0),
                info: SenderInfo {
                    ntp_timestamp: ntp,
                    rtp_timestamp: be32(body, 12),
                    packet_count: be32(body, 16),
                    octet_count: be32(body, 20),
                },
                // Anything after the blocks is a profile extension: ignored.
                blocks: &body[24..need],
            })
        }
        PT_RR => {
            let need = 4 + blocks_len;
            if body.len() < need {
                return Err(truncated);
            }
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: be32(body, 0),
                blocks: &body[4..need],
            })
        }
        PT_SDES => {
            let mut data = body;
            for _ in 0..count {
                let (_, _, used) = sdes_chunk(data).map_err(|_| truncated)?;
                data = &data[used..];
            }
            RtcpPacket::SourceDescription(Sdes { count, data: body })
        }
        PT_BYE => {
            let n = usize::from(count) * 4;
            if body.len() < n {
                return Err(truncated);
            }
            let (sources, after) = body.split_at(n);
            let reason = match after.first() {
                None => None,
                Some(&len) => {
                    let len = usize::from(len);
                    // A zero-length reason is just padding.
                    if len == 0 {
                        None
                    } else {
                        Some(after.get(1..1 + len).ok_or(truncated)?)
                    }
                }
            };
            RtcpPacket::Bye(Bye { sources, reason })
        }
        _ => RtcpPacket::Other {
            packet_type,
            count,
            body,
        },
    };
    Ok((parsed, rest))
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// Serialises a compound RTCP packet into a caller-provided buffer. Each
/// method appends one packet, or fails without writing anything.
#[derive(Debug)]
pub struct RtcpWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> RtcpWriter<'a> {
    /// Start writing at the front of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        RtcpWriter { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn reserve(&mut self, size: usize) -> Result<&mut [u8], RtcpError> {
        let available = self.buf.len().saturating_sub(self.len);
        if size > available {
            return Err(RtcpError::BufferTooSmall {
                needed: self.len + size,
                actual: self.buf.len(),
            });
        }
        let start = self.len;
        self.len += size;
        let out = &mut self.buf[start..start + size];
        out.fill(0);
        Ok(out)
    }

    fn header(out: &mut [u8], count: usize, packet_type: u8) {
        let words = (out.len() / 4 - 1) as u16;
        out[0] = 0x80 | (count as u8 & 0x1F);
        out[1] = packet_type;
        out[2..4].copy_from_slice(&words.to_be_bytes());
    }

    /// Append a sender report.
    pub fn sender_report(
        &mut self,
        ssrc: u32,
        info: &SenderInfo,
        blocks: &[ReportBlock],
    ) -> Result<(), RtcpError> {
        if blocks.len() > MAX_REPORT_BLOCKS {
            return Err(RtcpError::TooManyEntries(blocks.len()));
        }
        let out =
            self.reserve(HEADER_LEN + 4 + SENDER_INFO_LEN + blocks.len() * REPORT_BLOCK_LEN)?;
        Self::header(out, blocks.len(), PT_SR);
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        out[8..16].copy_from_slice(&info.ntp_timestamp.to_be_bytes());
        out[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
        out[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
        out[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
        for (dst, b) in out[28..].chunks_exact_mut(REPORT_BLOCK_LEN).zip(blocks) {
            b.write(dst);
        }
        Ok(())
    }

    /// Append a receiver report.
    pub fn receiver_report(&mut self, ssrc: u32, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        if blocks.len() > MAX_REPORT_BLOCKS {
            return Err(RtcpError::TooManyEntries(blocks.len()));
        }
        let out = self.reserve(HEADER_LEN + 4 + blocks.len() * REPORT_BLOCK_LEN)?;
        Self::header(out, blocks.len(), PT_RR);
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        for (dst, b) in out[8..].chunks_exact_mut(REPORT_BLOCK_LEN).zip(blocks) {
            b.write(dst);
        }
        Ok(())
    }

    /// Append an SDES packet with one chunk holding a CNAME item.
    pub fn sdes_cname(&mut self, ssrc: u32, cname: &[u8]) -> Result<(), RtcpError> {
        if cname.len() > 255 {
            return Err(RtcpError::TextTooLong(cname.len()));
        }
        // SSRC + type + length + text + at least one null, 32-bit aligned.
        let chunk = (4 + 2 + cname.len() + 1 + 3) & !3;
        let out = self.reserve(HEADER_LEN + chunk)?;
        Self::header(out, 1, PT_SDES);
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        out[8] = SDES_CNAME;
        out[9] = cname.len() as u8;
        out[10..10 + cname.len()].copy_from_slice(cname);
        Ok(())
    }

    /// Append a BYE for `sources` with an optional reason.
    pub fn bye(&mut self, sources: &[u32], reason: Option<&[u8]>) -> Result<(), RtcpError> {
        if sources.len() > MAX_REPORT_BLOCKS {
            return Err(RtcpError::TooManyEntries(sources.len()));
        }
        let reason_len = match reason {
            Some(r) if r.len() > 255 => return Err(RtcpError::TextTooLong(r.len())),
            Some(r) if !r.is_empty() => (1 + r.len() + 3) & !3,
            _ => 0,
        };
        let out = self.reserve(HEADER_LEN + sources.len() * 4 + reason_len)?;
        Self::header(out, sources.len(), PT_BYE);
        for (dst, s) in out[4..].chunks_exact_mut(4).zip(sources) {
            dst.copy_from_slice(&s.to_be_bytes());
        }
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            let at = HEADER_LEN + sources.len() * 4;
            out[at] = r.len() as u8;
            out[at + 1..at + 1 + r.len()].copy_from_slice(r);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Reception statistics (RFC 3550 A.1, A.3, A.8)
// ---------------------------------------------------------------------------

const SEQ_MOD: u32 = 1 << 16;
/// Largest forward jump still taken as the same stream.
const MAX_DROPOUT: u16 = 3000;
/// Largest backward step taken as reordering rather than a restart.
const MAX_MISORDER: u16 = 100;
/// Sequential packets needed before a new source counts as valid.
const MIN_SEQUENTIAL: u32 = 2;

/// Receive-side statistics of one RTP source.
///
/// Sequence numbers are validated as in RFC 3550 A.1: a new source is on
/// probation until two packets arrive in sequence; a jump of 3000 or more
/// is ignored unless the next packet follows it (then the sender is taken
/// to have restarted and the counts start over); a step back of up to 100
/// is reordering or duplication and still counted as received. Packets
/// not accepted make [`on_packet`](Self::on_packet) return `false`.
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    ssrc: u32,
    clock_rate: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    last_transit: Option<u32>,
    /// Jitter scaled by 16 (A.8's integer form), in RTP units.
    jitter_q4: u64,
    reordered: u64,
    restarts: u32,
    fraction_lost: u8,
}

impl ReceptionStats {
    /// Statistics for source `ssrc` whose RTP clock runs at `clock_rate`.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        ReceptionStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter_q4: 0,
            reordered: 0,
            restarts: 0,
            fraction_lost: 0,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.last_transit = None;
    }

    /// Account for one RTP packet with sequence number `seq` and timestamp
    /// `rtp_timestamp`, which arrived at `arrival` (the receiver's clock
    /// expressed in the stream's RTP clock units). Returns true if the
    /// packet belongs to the validated stream.
    pub fn on_packet(&mut self, seq: u16, rtp_timestamp: u32, arrival: u32) -> bool {
        if !self.started {
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        if !self.update_seq(seq) {
            return false;
        }
        self.update_jitter(rtp_timestamp, arrival);
        true
    }

    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received = self.received.wrapping_add(1);
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two packets in sequence after a big jump: the sender
                // restarted its sequence numbering.
                self.init_seq(seq);
                self.restarts = self.restarts.wrapping_add(1);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return false;
            }
        } else {
            self.reordered += 1;
        }
        self.received = self.received.wrapping_add(1);
        true
    }

    fn update_jitter(&mut self, rtp_timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_timestamp);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// The source's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP clock rate given to [`new`](Self::new).
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// True once the source passed probation.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// Highest sequence number received, extended with the wrap count.
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected: extended highest minus base sequence, plus one
    /// (0 before the source is valid).
    pub fn expected(&self) -> u32 {
        if !self.is_valid() {
            return 0;
        }
        self.extended_highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets received and accepted (duplicates included, as in A.3).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Expected minus received; negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// [`cumulative_lost`](Self::cumulative_lost) clamped to the 24-bit
    /// signed range of a report block.
    pub fn cumulative_lost_24(&self) -> i32 {
        self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4).min(u64::from(u32::MAX)) as u32
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_q4 as f64 / 16.0 * 1000.0 / f64::from(self.clock_rate)
    }

    /// Packets that arrived older than the highest sequence seen
    /// (reordered or duplicated).
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// How often the sender restarted its sequence numbers.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Fraction lost (out of 256) computed by the last
    /// [`report_block`](Self::report_block).
    pub fn fraction_lost(&self) -> u8 {
        self.fraction_lost
    }

    /// A report block about this source, closing the current reporting
    /// interval (A.3): the fraction lost covers the packets since the
    /// previous call. LSR and DLSR are left 0 for the caller to fill.
    pub fn report_block(&mut self) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        self.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost: self.fraction_lost,
            cumulative_lost: self.cumulative_lost_24(),
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr: 0,
            delay_since_last_sr: 0,
        }
    }
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

/// Settings of an [`RtcpSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpConfig {
    /// Our SSRC (the one on our outgoing RTP).
    pub local_ssrc: u32,
    /// Our CNAME, at most 255 bytes (longer is truncated).
    pub cname: String,
    /// RTP clock rate of the remote stream we receive (for jitter in ms).
    pub clock_rate: u32,
    /// Nominal report interval (RFC 3550's 5 s minimum by default);
    /// clamped to 100 ms ..= 1 hour.
    pub interval: Duration,
    /// Seed for the interval randomisation (any value; the SSRC is fine).
    pub seed: u64,
}

impl RtcpConfig {
    /// Defaults: 5 s nominal interval, seeded from the SSRC.
    pub fn new(local_ssrc: u32, cname: impl Into<String>, clock_rate: u32) -> Self {
        RtcpConfig {
            local_ssrc,
            cname: cname.into(),
            clock_rate,
            interval: Duration::from_secs(5),
            seed: u64::from(local_ssrc),
        }
    }
}

/// What one received RTCP datagram told us.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RtcpSummary {
    /// The sender info of an SR from the remote source, if one came.
    pub sender_info: Option<SenderInfo>,
    /// A report block about our stream, if one came.
    pub report_about_us: Option<ReportBlock>,
    /// Round-trip time measured from that block's LSR/DLSR.
    pub rtt: Option<Duration>,
    /// The remote source said BYE.
    pub bye: bool,
}

#[derive(Debug, Clone, Copy)]
struct LastSr {
    ssrc: u32,
    lsr: u32,
    at: Instant,
}

/// RTCP for one call's stream pair (our sender, one remote source).
///
/// Feed it what we send ([`on_rtp_sent`](Self::on_rtp_sent)), what we
/// receive ([`on_rtp_received`](Self::on_rtp_received),
/// [`on_rtcp`](Self::on_rtcp)), and poll
/// [`next_report_at`](Self::next_report_at): when it is due, call
/// [`build_report`](Self::build_report) and send the bytes.
///
/// Reports are spaced by the nominal interval (5 s) times a uniform random
/// factor in [0.5, 1.5), the first one after half the nominal interval
/// (RFC 3550 §6.2). The §6.3 reconsideration and 1.21828 compensation are
/// left out: a call has two members, for whom the 5 s minimum always
/// applies. A report is an SR if we sent RTP since the previous report,
/// else an RR, followed by an SDES CNAME.
#[derive(Debug, Clone)]
pub struct RtcpSession {
    local_ssrc: u32,
    cname: String,
    clock_rate: u32,
    interval: Duration,
    rng: u64,
    next_report: Instant,
    sent_packets: u32,
    sent_octets: u32,
    sent_since_report: bool,
    remote: Option<ReceptionStats>,
    last_sr: Option<LastSr>,
    remote_report: Option<ReportBlock>,
    rtt: Option<Duration>,
    bye_received: bool,
}

impl RtcpSession {
    /// Start a session at `now`.
    pub fn new(config: RtcpConfig, now: Instant) -> Self {
        let mut cname = config.cname;
        if cname.len() > 255 {
            let mut cut = 255;
            while !cname.is_char_boundary(cut) {
                cut -= 1;
            }
            cname.truncate(cut);
        }
        let mut s = RtcpSession {
            local_ssrc: config.local_ssrc,
            cname,
            clock_rate: config.clock_rate.max(1),
            interval: config
                .interval
                .clamp(Duration::from_millis(100), Duration::from_secs(3600)),
            rng: config.seed ^ 0x9E37_79B9_7F4A_7C15,
            next_report: now,
            sent_packets: 0,
            sent_octets: 0,
            sent_since_report: false,
            remote: None,
            last_sr: None,
            remote_report: None,
            rtt: None,
            bye_received: false,
        };
        let first = s.randomized(s.interval / 2);
        s.next_report = now.checked_add(first).unwrap_or(now);
        s
    }

    /// `base` times a uniform factor in [0.5, 1.5).
    fn randomized(&mut self, base: Duration) -> Duration {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.5 + unit)
    }

    /// Our SSRC.
    pub fn local_ssrc(&self) -> u32 {
        self.local_ssrc
    }

    /// Count an RTP packet we sent with `payload_len` payload octets.
    pub fn on_rtp_sent(&mut self, payload_len: usize) {
        self.sent_packets = self.sent_packets.wrapping_add(1);
        self.sent_octets = self.sent_octets.wrapping_add(payload_len as u32);
        self.sent_since_report = true;
    }

    /// Account for a received RTP packet (see
    /// [`ReceptionStats::on_packet`]). A new SSRC replaces the tracked
    /// source and starts its statistics afresh.
    pub fn on_rtp_received(
        &mut self,
        ssrc: u32,
        seq: u16,
        rtp_timestamp: u32,
        arrival: u32,
    ) -> bool {
        let clock_rate = self.clock_rate;
        let stats = match &mut self.remote {
            Some(s) if s.ssrc() == ssrc => s,
            slot => slot.insert(ReceptionStats::new(ssrc, clock_rate)),
        };
        stats.on_packet(seq, rtp_timestamp, arrival)
    }

    /// Process a received RTCP datagram at `now`, with `ntp_now` the
    /// current wall-clock time as an NTP timestamp (the same clock we put
    /// in our SRs). Updates RTT, the remote's view of our stream and the
    /// LSR we echo back.
    pub fn on_rtcp(
        &mut self,
        now: Instant,
        ntp_now: u64,
        buf: &[u8],
    ) -> Result<RtcpSummary, RtcpError> {
        let compound = parse_compound(buf)?;
        let mut summary = RtcpSummary::default();
        let remote_ssrc = self.remote.as_ref().map(|r| r.ssrc());
        for packet in compound.packets() {
            let blocks = match &packet {
                RtcpPacket::SenderReport(sr) => {
                    if remote_ssrc.is_none_or(|r| r == sr.ssrc) {
                        self.last_sr = Some(LastSr {
                            ssrc: sr.ssrc,
                            lsr: ntp_middle32(sr.info.ntp_timestamp),
                            at: now,
                        });
                        summary.sender_info = Some(sr.info);
                    }
                    sr.report_blocks()
                }
                RtcpPacket::ReceiverReport(rr) => rr.report_blocks(),
                RtcpPacket::Bye(bye) => {
                    if bye.sources().any(|s| remote_ssrc.is_none_or(|r| r == s)) {
                        self.bye_received = true;
                        summary.bye = true;
                    }
                    continue;
                }
                _ => continue,
            };
            for block in blocks.filter(|b| b.ssrc == self.local_ssrc) {
                summary.report_about_us = Some(block);
                self.remote_report = Some(block);
                if let Some(rtt) = rtt_from_block(&block, ntp_now) {
                    summary.rtt = Some(rtt);
                    self.rtt = Some(rtt);
                }
            }
        }
        Ok(summary)
    }

    /// A report about our stream read by another RTCP stack (WebRTC's): the remote's view
    /// and RTT, as if from a receiver report of ours.
    pub fn on_peer_report(&mut self, block: ReportBlock, rtt: Option<Duration>) {
        self.remote_report = Some(ReportBlock {
            ssrc: self.local_ssrc,
            ..block
        });
        if rtt.is_some() {
            self.rtt = rtt;
        }
    }

    /// When the next report is due.
    pub fn next_report_at(&self) -> Instant {
        self.next_report
    }

    /// True if a report is due at `now`.
    pub fn is_report_due(&self, now: Instant) -> bool {
        now >= self.next_report
    }

    /// Write our report (SR or RR, then SDES CNAME) into `out` and schedule
    /// the next one. `ntp_now` is the wall-clock time and `rtp_timestamp`
    /// the RTP timestamp of our stream at that same instant (used in SRs).
    pub fn build_report(
        &mut self,
        now: Instant,
        ntp_now: u64,
        rtp_timestamp: u32,
        out: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let mut w = RtcpWriter::new(out);
        self.write_report(&mut w, now, ntp_now, rtp_timestamp)?;
        Ok(w.len())
    }

    /// Like [`build_report`](Self::build_report) with a BYE for our SSRC
    /// appended, for the end of the call.
    pub fn build_bye(
        &mut self,
        now: Instant,
        ntp_now: u64,
        rtp_timestamp: u32,
        reason: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let mut w = RtcpWriter::new(out);
        self.write_report(&mut w, now, ntp_now, rtp_timestamp)?;
        w.bye(&[self.local_ssrc], reason)?;
        Ok(w.len())
    }

    fn write_report(
        &mut self,
        w: &mut RtcpWriter<'_>,
        now: Instant,
        ntp_now: u64,
        rtp_timestamp: u32,
    ) -> Result<(), RtcpError> {
        // Check room first so a failed write changes no interval state.
        let sdes_len = HEADER_LEN + ((4 + 2 + self.cname.len() + 1 + 3) & !3);
        let report_len = if self.sent_since_report { 28 } else { 8 } + REPORT_BLOCK_LEN;
        let room = w.buf.len().saturating_sub(w.len);
        if room < report_len + sdes_len {
            return Err(RtcpError::BufferTooSmall {
                needed: w.len + report_len + sdes_len,
                actual: w.buf.len(),
            });
        }
        let mut blocks = [ReportBlock::default(); 1];
        let mut n = 0;
        if let Some(remote) = self.remote.as_mut().filter(|r| r.is_valid()) {
            let mut block = remote.report_block();
            if let Some(sr) = self.last_sr.filter(|s| s.ssrc == block.ssrc) {
                block.last_sr = sr.lsr;
                block.delay_since_last_sr = duration_to_q16(now.saturating_duration_since(sr.at));
            }
            blocks[0] = block;
            n = 1;
        }
        if self.sent_since_report {
            let info = SenderInfo {
                ntp_timestamp: ntp_now,
                rtp_timestamp,
                packet_count: self.sent_packets,
                octet_count: self.sent_octets,
            };
            w.sender_report(self.local_ssrc, &info, &blocks[..n])?;
        } else {
            w.receiver_report(self.local_ssrc, &blocks[..n])?;
        }
        w.sdes_cname(self.local_ssrc, self.cname.as_bytes())?;
        self.sent_since_report = false;
        let gap = self.randomized(self.interval);
        self.next_report = now.checked_add(gap).unwrap_or(now);
        Ok(())
    }

    /// Latest round-trip time measured from a report about our stream.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// [`rtt`](Self::rtt) in milliseconds.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt.map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Statistics of the remote source, once RTP has arrived.
    pub fn reception(&self) -> Option<&ReceptionStats> {
        self.remote.as_ref()
    }

    /// The remote's latest report block about our stream (its loss and
    /// jitter as the far end sees them).
    pub fn remote_report(&self) -> Option<&ReportBlock> {
        self.remote_report.as_ref()
    }

    /// True once the remote source sent BYE.
    pub fn bye_received(&self) -> bool {
        self.bye_received
    }
}

/// RTT = A − LSR − DLSR (RFC 3550 §6.4.1), all in 1/65536 s, with A the
/// arrival time. `None` without an SR echo or if clocks make it negative.
fn rtt_from_block(block: &ReportBlock, ntp_now: u64) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let a = ntp_middle32(ntp_now);
    let rtt = a
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    if (rtt as i32) < 0 {
        return None;
    }
    Some(q16_to_duration(rtt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 42,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    #[test]
    fn sr_wire_format() {
        let mut buf = [0u8; 128];
        let mut w = RtcpWriter::new(&mut buf);
        let info = SenderInfo {
            ntp_timestamp: 0xAABB_CCDD_0011_2233,
            rtp_timestamp: 0x0102_0304,
            packet_count: 7,
            octet_count: 1120,
        };
        w.sender_report(0xDEAD_BEEF, &info, &[block(9)]).unwrap();
        let n = w.len();
        assert_eq!(n, 52);
        let expect_head = [
            0x81, 200, 0x00, 12, // V=2 RC=1, SR, length 12 words
            0xDE, 0xAD, 0xBE, 0xEF, // SSRC
            0xAA, 0xBB, 0xCC, 0xDD, 0x00, 0x11, 0x22, 0x33, // NTP
            0x01, 0x02, 0x03, 0x04, // RTP ts
            0, 0, 0, 7, 0, 0, 0x04, 0x60, // counts
            0, 0, 0, 9, // block SSRC
            25, 0xFF, 0xFF, 0xFD, // fraction, cumulative -3
            0, 1, 0, 5, 0, 0, 0, 42, 0x12, 0x34, 0x56, 0x78, 0, 1, 0x80, 0,
        ];
        assert_eq!(&buf[..n], &expect_head[..]);
    }

    #[test]
    fn compound_round_trip() {
        let mut buf = [0u8; 256];
        let mut w = RtcpWriter::new(&mut buf);
        let info = SenderInfo {
            ntp_timestamp: 1 << 40,
            rtp_timestamp: 160,
            packet_count: 1,
            octet_count: 160,
        };
        w.sender_report(1, &info, &[block(2), block(3)]).unwrap();
        w.sdes_cname(1, b"parley@node-1").unwrap();
        w.receiver_report(1, &[]).unwrap();
        w.bye(&[1, 5], Some(b"hangup")).unwrap();
        let n = w.len();
        assert_eq!(n % 4, 0);
        let compound = parse_compound(&buf[..n]).unwrap();
        let packets: Vec<_> = compound.packets().collect();
        assert_eq!(packets.len(), 4);
        match &packets[0] {
            RtcpPacket::SenderReport(sr) => {
                assert_eq!(sr.ssrc, 1);
                assert_eq!(sr.info, info);
                let b: Vec<_> = sr.report_blocks().collect();
                assert_eq!(b, vec![block(2), block(3)]);
            }
            p => panic!("expected SR, got {p:?}"),
        }
        match &packets[1] {
            RtcpPacket::SourceDescription(sdes) => {
                let chunks: Vec<_> = sdes.chunks().collect();
                assert_eq!(chunks.len(), 1);
                assert_eq!(chunks[0].ssrc, 1);
                assert_eq!(chunks[0].cname(), Some(&b"parley@node-1"[..]));
            }
            p => panic!("expected SDES, got {p:?}"),
        }
        match &packets[2] {
            RtcpPacket::ReceiverReport(rr) => assert_eq!(rr.report_blocks().len(), 0),
            p => panic!("expected RR, got {p:?}"),
        }
        match &packets[3] {
            RtcpPacket::Bye(bye) => {
                assert_eq!(bye.sources().collect::<Vec<_>>(), vec![1, 5]);
                assert_eq!(bye.reason, Some(&b"hangup"[..]));
            }
            p => panic!("expected BYE, got {p:?}"),
        }
    }

    #[test]
    fn cname_lengths_align() {
        for len in 0..12 {
            let name = vec![b'x'; len];
            let mut buf = [0u8; 64];
            let mut w = RtcpWriter::new(&mut buf);
            w.receiver_report(7, &[]).unwrap();
            w.sdes_cname(7, &name).unwrap();
            let n = w.len();
            assert_eq!(n % 4, 0);
            let c = parse_compound(&buf[..n]).unwrap();
            let sdes = c.packets().nth(1).unwrap();
            let RtcpPacket::SourceDescription(s) = sdes else {
                panic!("not SDES")
            };
            let chunk = s.chunks().next().unwrap();
            // A zero-length CNAME is still an item.
            assert_eq!(chunk.items().count(), 1);
            assert_eq!(chunk.cname(), Some(&name[..]));
        }
    }

    #[test]
    fn sdes_with_several_items_and_chunks() {
        // RR, then SDES with 2 chunks: (SSRC 1: CNAME "ab", NAME "c"), (SSRC 2: CNAME "z").
        let mut pkt = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        let sdes_body: Vec<u8> = vec![
            0, 0, 0, 1, 1, 2, b'a', b'b', 2, 1, b'c', 0, // chunk 1: 12 bytes
            0, 0, 0, 2, 1, 1, b'z', 0, // chunk 2: 8 bytes
        ];
        pkt.extend([0x82, 202, 0, (sdes_body.len() / 4) as u8]);
        pkt.extend(&sdes_body);
        let c = parse_compound(&pkt).unwrap();
        let RtcpPacket::SourceDescription(s) = c.packets().nth(1).unwrap() else {
            panic!("not SDES")
        };
        let chunks: Vec<_> = s.chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].cname(), Some(&b"ab"[..]));
        let items: Vec<_> = chunks[0].items().map(|i| (i.kind, i.value)).collect();
        assert_eq!(items, vec![(1, &b"ab"[..]), (2, &b"c"[..])]);
        assert_eq!((chunks[1].ssrc, chunks[1].cname()), (2, Some(&b"z"[..])));
    }

    #[test]
    fn unknown_types_are_skipped() {
        let mut pkt = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        // APP (204) with name and 4 bytes of data, then an unassigned type 199
        // and an RTPFB (205) feedback packet.
        pkt.extend([
            0x81, 204, 0, 3, 0, 0, 0, 9, b'T', b'E', b'S', b'T', 1, 2, 3, 4,
        ]);
        pkt.extend([0x80, 199, 0, 0]);
        pkt.extend([0x81, 205, 0, 2, 0, 0, 0, 9, 0, 0, 0, 3]);
        pkt.extend([0x81, 203, 0, 1, 0, 0, 0, 9]);
        let c = parse_compound(&pkt).unwrap();
        let kinds: Vec<u8> = c
            .packets()
            .map(|p| match p {
                RtcpPacket::ReceiverReport(_) => 201,
                RtcpPacket::Bye(_) => 203,
                RtcpPacket::Other { packet_type, .. } => packet_type,
                _ => 0,
            })
            .collect();
        assert_eq!(kinds, vec![201, 204, 199, 205, 203]);
    }

    #[test]
    fn padding_on_last_packet_only() {
        // RR with 4 bytes of padding on the last packet: accepted.
        let ok = [0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
        let c = parse_compound(&ok).unwrap();
        assert_eq!(c.packets().count(), 1);
        // Same packet followed by another: padding not allowed.
        let mut bad = ok.to_vec();
        bad.extend([0x80, 203, 0, 0]);
        assert_eq!(parse_compound(&bad).unwrap_err(), RtcpError::BadPadding);
        // Zero padding count.
        let zero = [0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(parse_compound(&zero).unwrap_err(), RtcpError::BadPadding);
    }

    #[test]
    fn malformed_compounds_are_rejected() {
        assert!(matches!(
            parse_compound(&[]),
            Err(RtcpError::TooShort { .. })
        ));
        assert!(matches!(
            parse_compound(&[0x80, 201, 0]),
            Err(RtcpError::TooShort { .. })
        ));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 0]).unwrap_err(),
            RtcpError::BadVersion(1)
        );
        // Length says 2 words but only 1 follows.
        assert!(matches!(
            parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 1]),
            Err(RtcpError::BadLength { .. })
        ));
        // First packet must be SR or RR.
        assert_eq!(
            parse_compound(&[0x81, 203, 0, 1, 0, 0, 0, 1]).unwrap_err(),
            RtcpError::NotReportFirst(203)
        );
        // RR announcing a report block its body lacks.
        assert!(matches!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Truncated {
                packet_type: 201,
                ..
            })
        ));
        // SR too short for sender info.
        assert!(matches!(
            parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Truncated {
                packet_type: 200,
                ..
            })
        ));
        // SDES item running past the body.
        let mut sdes = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        sdes.extend([0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']);
        assert!(matches!(
            parse_compound(&sdes),
            Err(RtcpError::Truncated {
                packet_type: 202,
                ..
            })
        ));
        // BYE reason longer than the body.
        let mut bye = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        bye.extend([0x81, 203, 0, 2, 0, 0, 0, 1, 8, b'x', b'y', 0]);
        assert!(matches!(
            parse_compound(&bye),
            Err(RtcpError::Truncated {
                packet_type: 203,
                ..
            })
        ));
        // A trailing partial header after a valid packet.
        assert!(parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x80]).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        let mut buf = [0u8; 96];
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            // Make many of them look plausible: version 2, SR/RR first, sane length.
            if round % 2 == 0 {
                buf[0] = 0x80 | (buf[0] & 0x3F);
                buf[1] = 200 + (buf[1] & 1);
                buf[2] = 0;
                buf[3] %= 24;
            }
            let len = (seed as usize) % buf.len();
            if let Ok(c) = parse_compound(&buf[..len]) {
                for p in c.packets() {
                    match p {
                        RtcpPacket::SenderReport(sr) => assert!(sr.report_blocks().count() <= 31),
                        RtcpPacket::ReceiverReport(rr) => assert!(rr.report_blocks().count() <= 31),
                        RtcpPacket::SourceDescription(s) => {
                            for ch in s.chunks() {
                                let _ = ch.items().count();
                            }
                        }
                        RtcpPacket::Bye(b) => {
                            let _ = b.sources().count();
                        }
                        RtcpPacket::Other { .. } => {}
                    }
                }
            }
        }
    }

    #[test]
    fn writer_limits() {
        let mut small = [0u8; 20];
        let mut w = RtcpWriter::new(&mut small);
        assert!(matches!(
            w.sender_report(1, &SenderInfo::default(), &[]),
            Err(RtcpError::BufferTooSmall {
                needed: 28,
                actual: 20
            })
        ));
        assert!(w.is_empty());
        let mut buf = [0u8; 2048];
        let mut w = RtcpWriter::new(&mut buf);
        let many = [ReportBlock::default(); 32];
        assert_eq!(
            w.receiver_report(1, &many).unwrap_err(),
            RtcpError::TooManyEntries(32)
        );
        w.receiver_report(1, &many[..31]).unwrap();
        assert_eq!(w.len(), 8 + 31 * 24);
        assert_eq!(
            w.sdes_cname(1, &[b'a'; 256]).unwrap_err(),
            RtcpError::TextTooLong(256)
        );
        assert_eq!(
            w.bye(&[1], Some(&[b'a'; 300])).unwrap_err(),
            RtcpError::TextTooLong(300)
        );
        w.bye(&[1], Some(b"")).unwrap();
    }

    #[test]
    fn cumulative_lost_sign_extension_and_clamp() {
        let mut b = block(1);
        for (v, wire) in [
            (-1, -1),
            (5, 5),
            (0x7F_FFFF, 0x7F_FFFF),
            (10_000_000, 0x7F_FFFF),
            (-10_000_000, -0x80_0000),
        ] {
            b.cumulative_lost = v;
            let mut buf = [0u8; 24];
            b.write(&mut buf);
            assert_eq!(ReportBlock::parse(&buf).cumulative_lost, wire, "{v}");
        }
    }

    #[test]
    fn ntp_helpers() {
        let ntp = ntp_from_unix(Duration::new(1, 500_000_000));
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp as u32, 0x8000_0000);
        assert_eq!(ntp_middle32(0x0000_1234_5678_0000), 0x1234_5678);
        assert_eq!(duration_to_q16(Duration::from_millis(500)), 32768);
        assert_eq!(q16_to_duration(65536), Duration::from_secs(1));
        assert_eq!(duration_to_q16(Duration::from_secs(1 << 40)), u32::MAX);
        assert_eq!(duration_to_q16(Duration::MAX), u32::MAX);
    }

    // ----- reception statistics -----

    fn feed(rs: &mut ReceptionStats, seqs: impl IntoIterator<Item = u16>) -> usize {
        let mut valid = 0;
        for s in seqs {
            let ts = u32::from(s).wrapping_mul(160);
            if rs.on_packet(s, ts, ts) {
                valid += 1;
            }
        }
        valid
    }

    #[test]
    fn probation_then_clean_stream() {
        let mut rs = ReceptionStats::new(1, 8000);
        assert!(!rs.on_packet(100, 0, 0));
        assert!(!rs.is_valid());
        assert_eq!(rs.expected(), 0);
        assert!(rs.on_packet(101, 160, 160));
        assert!(rs.is_valid());
        feed(&mut rs, 102..200);
        assert_eq!(rs.expected(), 99);
        assert_eq!(rs.received(), 99);
        assert_eq!(rs.cumulative_lost(), 0);
        assert_eq!(rs.extended_highest_seq(), 199);
        assert_eq!(rs.report_block().fraction_lost, 0);
    }

    #[test]
    fn probation_restarts_on_out_of_order() {
        let mut rs = ReceptionStats::new(1, 8000);
        assert!(!rs.on_packet(10, 0, 0));
        assert!(!rs.on_packet(50, 0, 0)); // not sequential: probation again
        assert!(rs.on_packet(51, 0, 0));
        assert_eq!(rs.expected(), 1);
    }

    #[test]
    fn loss_and_fraction_per_interval() {
        let mut rs = ReceptionStats::new(1, 8000);
        // 0..=99 minus 10 losses.
        let seqs = (0u16..100).filter(|s| s % 10 != 5);
        feed(&mut rs, seqs);
        // base is 1 (seq 0 was probation), highest 99: expected 99, received 89.
        assert_eq!(rs.expected(), 99);
        assert_eq!(rs.cumulative_lost(), 10);
        let b = rs.report_block();
        assert_eq!(b.fraction_lost, (10 * 256 / 99) as u8);
        assert_eq!(b.cumulative_lost, 10);
        // Next interval: 50 packets, 5 lost.
        feed(&mut rs, (100u16..150).filter(|s| s % 10 != 0));
        let b = rs.report_block();
        assert_eq!(b.fraction_lost, (5 * 256 / 50) as u8);
        assert_eq!(b.cumulative_lost, 15);
        // Empty interval: fraction 0.
        assert_eq!(rs.report_block().fraction_lost, 0);
    }

    #[test]
    fn duplicates_make_loss_negative_and_fraction_zero() {
        let mut rs = ReceptionStats::new(1, 8000);
        feed(&mut rs, 0u16..20);
        rs.report_block();
        feed(&mut rs, [20, 20, 21, 21, 22, 22]);
        assert_eq!(rs.cumulative_lost(), -3);
        assert_eq!(rs.reordered(), 0); // exact duplicates of the highest
        let b = rs.report_block();
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, -3);
    }

    #[test]
    fn sequence_wrap_extends() {
        let mut rs = ReceptionStats::new(1, 8000);
        let seqs = (65530u32..65546).map(|s| s as u16);
        assert_eq!(feed(&mut rs, seqs), 15);
        assert_eq!(rs.extended_highest_seq(), 65536 + 9);
        assert_eq!(rs.expected(), 15);
        assert_eq!(rs.cumulative_lost(), 0);
    }

    #[test]
    fn reordering_is_counted_not_lost() {
        let mut rs = ReceptionStats::new(1, 8000);
        feed(&mut rs, [0, 1, 2, 4, 3, 5, 7, 6, 8]);
        assert_eq!(rs.reordered(), 2);
        assert_eq!(rs.cumulative_lost(), 0);
        assert_eq!(rs.extended_highest_seq(), 8);
    }

    #[test]
    fn big_jump_ignored_unless_sequential() {
        let mut rs = ReceptionStats::new(1, 8000);
        feed(&mut rs, 0u16..10);
        // A stray packet far ahead is rejected and changes nothing.
        assert!(!rs.on_packet(30_000, 0, 0));
        assert_eq!(rs.extended_highest_seq(), 9);
        feed(&mut rs, 10u16..12);
        assert_eq!(rs.cumulative_lost(), 0);
        // Two in a row far ahead: the sender restarted.
        assert!(!rs.on_packet(40_000, 0, 0));
        assert!(rs.on_packet(40_001, 0, 0));
        assert_eq!(rs.restarts(), 1);
        assert_eq!(rs.expected(), 1);
        assert_eq!(rs.received(), 1);
        feed(&mut rs, 40_002u16..40_010);
        assert_eq!(rs.expected(), 9);
        assert_eq!(rs.cumulative_lost(), 0);
        // Old packets from before the restart are ignored as a big jump back.
        assert!(!rs.on_packet(11, 0, 0));
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let mut rs = ReceptionStats::new(1, 8000);
        let mut seq = 0u16;
        rs.on_packet(seq, 0, 0);
        // Skip 2999 packets each time: just under MAX_DROPOUT.
        for _ in 0..3000 {
            seq = seq.wrapping_add(1);
            rs.on_packet(seq, 0, 0);
            seq = seq.wrapping_add(2999);
            rs.on_packet(seq, 0, 0);
        }
        assert!(rs.cumulative_lost() > 0x7F_FFFF, "{}", rs.cumulative_lost());
        assert_eq!(rs.cumulative_lost_24(), 0x7F_FFFF);
        assert_eq!(rs.report_block().cumulative_lost, 0x7F_FFFF);
        assert_eq!(rs.fraction_lost(), 255);
    }

    #[test]
    fn jitter_follows_a8() {
        // Constant transit: no jitter.
        let mut rs = ReceptionStats::new(1, 8000);
        for i in 0..50u16 {
            let ts = u32::from(i) * 160;
            rs.on_packet(i, ts, ts + 400);
        }
        assert_eq!(rs.jitter(), 0);

        // Transit alternating by 80 ticks (10 ms): jitter converges to 80.
        let mut rs = ReceptionStats::new(1, 8000);
        let mut reference = 0.0f64;
        let mut last: Option<f64> = None;
        for i in 0..400u16 {
            let ts = u32::from(i) * 160;
            let arrival = ts + if i % 2 == 0 { 1000 } else { 1080 };
            if rs.on_packet(i, ts, arrival) {
                let transit = f64::from(arrival) - f64::from(ts);
                if let Some(l) = last {
                    reference += ((transit - l).abs() - reference) / 16.0;
                }
                last = Some(transit);
            }
        }
        assert!(
            (f64::from(rs.jitter()) - reference).abs() <= 1.0,
            "{} vs {reference}",
            rs.jitter()
        );
        assert!((79..=80).contains(&rs.jitter()), "{}", rs.jitter());
        assert!((rs.jitter_ms() - 10.0).abs() < 0.2, "{}", rs.jitter_ms());

        // Timestamps and arrival wrapping around u32 do not disturb it.
        let mut rs = ReceptionStats::new(1, 8000);
        let base = u32::MAX - 4000;
        for i in 0..60u16 {
            let ts = base.wrapping_add(u32::from(i) * 160);
            rs.on_packet(i, ts, ts.wrapping_add(77));
        }
        assert_eq!(rs.jitter(), 0);
    }

    // ----- session -----

    const SSRC_A: u32 = 0xA;
    const SSRC_B: u32 = 0xB;

    fn session(ssrc: u32, now: Instant) -> RtcpSession {
        RtcpSession::new(
            RtcpConfig::new(ssrc, format!("node-{ssrc}@parley"), 8000),
            now,
        )
    }

    #[test]
    fn report_schedule_is_randomized_around_5s() {
        let t0 = Instant::now();
        let mut s = session(SSRC_A, t0);
        let first = s.next_report_at() - t0;
        assert!(
            first >= Duration::from_millis(1250) && first < Duration::from_millis(3750),
            "{first:?}"
        );
        assert!(!s.is_report_due(t0));
        assert!(s.is_report_due(s.next_report_at()));
        let mut now = s.next_report_at();
        let mut buf = [0u8; 512];
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for _ in 0..200 {
            s.build_report(now, 0, 0, &mut buf).unwrap();
            let gap = s.next_report_at() - now;
            min = min.min(gap);
            max = max.max(gap);
            now = s.next_report_at();
        }
        assert!(min >= Duration::from_millis(2500) && max < Duration::from_millis(7500));
        // Actually random: spread over most of the range.
        assert!(
            min < Duration::from_millis(3000) && max > Duration::from_millis(7000),
            "{min:?} {max:?}"
        );
        // Absurd intervals are clamped instead of overflowing.
        let huge = RtcpSession::new(
            RtcpConfig {
                interval: Duration::MAX,
                ..RtcpConfig::new(SSRC_A, "x", 8000)
            },
            t0,
        );
        assert!(huge.next_report_at() - t0 < Duration::from_secs(2700));
        let tiny = RtcpSession::new(
            RtcpConfig {
                interval: Duration::ZERO,
                ..RtcpConfig::new(SSRC_A, "x", 8000)
            },
            t0,
        );
        assert!(tiny.next_report_at() - t0 >= Duration::from_millis(25));
        // Different seeds give different schedules.
        let other = RtcpSession::new(
            RtcpConfig {
                seed: 99,
                ..RtcpConfig::new(SSRC_A, "x", 8000)
            },
            t0,
        );
        assert_ne!(other.next_report_at(), session(SSRC_A, t0).next_report_at());
    }

    #[test]
    fn sr_when_sending_rr_otherwise() {
        let t0 = Instant::now();
        let mut s = session(SSRC_A, t0);
        let mut buf = [0u8; 512];
        let n = s.build_report(t0, 5 << 32, 1234, &mut buf).unwrap();
        let c = parse_compound(&buf[..n]).unwrap();
        let mut it = c.packets();
        assert!(
            matches!(it.next(), Some(RtcpPacket::ReceiverReport(ref rr)) if rr.ssrc == SSRC_A && rr.report_blocks().len() == 0)
        );
        match it.next() {
            Some(RtcpPacket::SourceDescription(sd)) => {
                assert_eq!(
                    sd.chunks().next().unwrap().cname(),
                    Some(&b"node-10@parley"[..])
                )
            }
            p => panic!("{p:?}"),
        }
        for _ in 0..3 {
            s.on_rtp_sent(160);
        }
        let n = s.build_report(t0, 6 << 32, 4321, &mut buf).unwrap();
        let c = parse_compound(&buf[..n]).unwrap();
        match c.packets().next() {
            Some(RtcpPacket::SenderReport(sr)) => {
                assert_eq!(sr.info.packet_count, 3);
                assert_eq!(sr.info.octet_count, 480);
                assert_eq!(sr.info.rtp_timestamp, 4321);
                assert_eq!(sr.info.ntp_timestamp, 6 << 32);
            }
            p => panic!("{p:?}"),
        }
        // Nothing sent since: back to RR.
        let n = s.build_report(t0, 7 << 32, 0, &mut buf).unwrap();
        assert!(matches!(
            parse_compound(&buf[..n]).unwrap().packets().next(),
            Some(RtcpPacket::ReceiverReport(_))
        ));
        // Too small a buffer fails cleanly.
        s.on_rtp_sent(160);
        assert!(matches!(
            s.build_report(t0, 0, 0, &mut buf[..40]),
            Err(RtcpError::BufferTooSmall { .. })
        ));
        let n = s.build_report(t0, 0, 0, &mut buf).unwrap();
        assert!(matches!(
            parse_compound(&buf[..n]).unwrap().packets().next(),
            Some(RtcpPacket::SenderReport(_))
        ));
    }

    #[test]
    fn rtt_from_lsr_dlsr_between_two_sessions() {
        let t0 = Instant::now();
        let ntp0: u64 = 3_900_000_000 << 32;
        let ms = |m: u64| Duration::from_millis(m);
        let ntp_at = |d: Duration| ntp0 + ((d.as_nanos() << 32) / 1_000_000_000) as u64;
        let mut a = session(SSRC_A, t0);
        let mut b = session(SSRC_B, t0);
        let mut buf = [0u8; 512];

        // A streams to B for a while.
        for i in 0..50u16 {
            a.on_rtp_sent(160);
            let ts = u32::from(i) * 160;
            b.on_rtp_received(SSRC_A, i, ts, ts + 800);
        }
        // A sends an SR at t=1 s; it takes 40 ms one way.
        let n = a
            .build_report(t0 + ms(1000), ntp_at(ms(1000)), 8000, &mut buf)
            .unwrap();
        let sum = b
            .on_rtcp(t0 + ms(1040), ntp_at(ms(1040)), &buf[..n])
            .unwrap();
        assert_eq!(sum.sender_info.map(|i| i.packet_count), Some(50));
        assert_eq!(sum.rtt, None);
        // B holds it 700 ms, then reports; 40 ms back to A.
        let n = b
            .build_report(t0 + ms(1740), ntp_at(ms(1740)), 0, &mut buf)
            .unwrap();
        let sum = a
            .on_rtcp(t0 + ms(1780), ntp_at(ms(1780)), &buf[..n])
            .unwrap();
        let block = sum.report_about_us.unwrap();
        assert_eq!(block.ssrc, SSRC_A);
        assert_eq!(block.last_sr, ntp_middle32(ntp_at(ms(1000))));
        assert_eq!(block.delay_since_last_sr, duration_to_q16(ms(700)));
        assert_eq!(block.cumulative_lost, 0);
        let rtt = a.rtt_ms().unwrap();
        assert!((rtt - 80.0).abs() < 0.1, "{rtt}");
        assert_eq!(sum.rtt, a.rtt());
        assert_eq!(a.remote_report().map(|r| r.ssrc), Some(SSRC_A));

        // A block without an LSR gives no RTT; one with an impossible LSR is ignored.
        let mut w_buf = [0u8; 64];
        let mut w = RtcpWriter::new(&mut w_buf);
        let mut blk = block;
        blk.last_sr = 0;
        w.receiver_report(SSRC_B, &[blk]).unwrap();
        let n = w.len();
        assert_eq!(
            a.on_rtcp(t0, ntp_at(ms(2000)), &w_buf[..n]).unwrap().rtt,
            None
        );
        let mut w = RtcpWriter::new(&mut w_buf);
        blk.last_sr = ntp_middle32(ntp_at(ms(5000)));
        w.receiver_report(SSRC_B, &[blk]).unwrap();
        let n = w.len();
        assert_eq!(
            a.on_rtcp(t0, ntp_at(ms(2000)), &w_buf[..n]).unwrap().rtt,
            None
        );
        assert!((a.rtt_ms().unwrap() - 80.0).abs() < 0.1);
    }

    #[test]
    fn receiver_reports_loss_and_ssrc_change() {
        let t0 = Instant::now();
        let mut s = session(SSRC_B, t0);
        for i in (0u16..100).filter(|i| i % 4 != 3) {
            s.on_rtp_received(SSRC_A, i, u32::from(i) * 160, u32::from(i) * 160);
        }
        let mut buf = [0u8; 512];
        let n = s.build_report(t0, 0, 0, &mut buf).unwrap();
        let c = parse_compound(&buf[..n]).unwrap();
        let Some(RtcpPacket::ReceiverReport(rr)) = c.packets().next() else {
            panic!("no RR")
        };
        let b = rr.report_blocks().next().unwrap();
        assert_eq!(b.ssrc, SSRC_A);
        assert_eq!(b.cumulative_lost, 24);
        assert_eq!(b.extended_highest_seq, 98);
        assert_eq!(b.last_sr, 0);
        // A new SSRC replaces the source.
        s.on_rtp_received(0xC, 7, 0, 0);
        s.on_rtp_received(0xC, 8, 160, 160);
        assert_eq!(
            s.reception().map(|r| (r.ssrc(), r.expected())),
            Some((0xC, 1))
        );
    }

    #[test]
    fn bye_from_remote_is_seen() {
        let t0 = Instant::now();
        let mut a = session(SSRC_A, t0);
        let mut b = session(SSRC_B, t0);
        b.on_rtp_received(SSRC_A, 1, 0, 0);
        let mut buf = [0u8; 512];
        let n = a.build_bye(t0, 0, 0, Some(b"done"), &mut buf).unwrap();
        let sum = b.on_rtcp(t0, 0, &buf[..n]).unwrap();
        assert!(sum.bye && b.bye_received());
        // A BYE for some other source is not ours to act on.
        let mut c = session(SSRC_B, t0);
        c.on_rtp_received(0x77, 1, 0, 0);
        assert!(!c.on_rtcp(t0, 0, &buf[..n]).unwrap().bye);
        // Garbage is an error, not a panic.
        assert!(b.on_rtcp(t0, 0, &[1, 2, 3, 4, 5]).is_err());
    }
}
