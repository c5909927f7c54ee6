//! SDP (RFC 8866, formerly RFC 4566) and the RFC 3264 offer/answer rules
//! that Parley needs to set up audio calls.
//!
//! The parser is deliberately lenient about presentation (bare `\n` line
//! ends, stray whitespace, lines and attributes it does not understand),
//! because SIP peers in the wild are sloppy and a call that fails over a
//! cosmetic detail is worse than one that ignores it. It is strict about the
//! few things media setup depends on (the version line, the origin, `m=`
//! syntax, port and payload-type numbers, connection addresses), and every
//! such error names the offending line so a 488/400 can be diagnosed from
//! the log alone.
//!
//! Negotiation is audio-only: the first usable `RTP/AVP` audio stream is
//! accepted, everything else is declined with port 0 as RFC 3264 §6
//! requires.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;
use thiserror::Error;

/// The payload type conventionally used for `telephone-event/8000`
/// (RFC 4733). Most SIP equipment uses 101, so offering it there avoids
/// surprising middleboxes that assume it.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Packet time used when neither side states one (RFC 3551 §4.5: 20 ms is
/// the default for the G.711 family).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// Bounds for accepting a peer's `a=ptime`. RFC 3551 §4.2 asks receivers to
/// handle up to 200 ms per packet; anything outside this range is a broken
/// or hostile value and we fall back to our own packet time instead of
/// sizing media buffers after it.
const MIN_PEER_PTIME_MS: u32 = 10;
const MAX_PEER_PTIME_MS: u32 = 200;

/// First and last payload type of the dynamic range (RFC 3551 §3).
const DYNAMIC_PT_FIRST: u8 = 96;
const DYNAMIC_PT_LAST: u8 = 127;

/// How many characters of an offending line are quoted in an error, so a
/// multi-kilobyte garbage line cannot flood the logs.
const ERROR_QUOTE_CHARS: usize = 60;

/// Why an SDP body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The body contains no lines at all.
    #[error("empty SDP body")]
    Empty,
    /// A specific line is malformed; `line` is 1-based.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// No `o=` line: without it we cannot tell re-offers apart (RFC 3264 §8).
    #[error("missing o= line")]
    MissingOrigin,
}

/// Why an offer or answer could not be turned into a media session. The
/// SIP layer maps all of these to `488 Not Acceptable Here` (or, on the UAC
/// side, to tearing the call down).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationError {
    /// No audio stream with a non-zero port was offered.
    #[error("no active audio stream in the session description")]
    NoAudio,
    /// Audio was offered, but only over transports we do not speak
    /// (e.g. `RTP/SAVP`, which needs SRTP keys we cannot handle).
    #[error("audio offered only over unsupported transport {0}")]
    UnsupportedTransport(String),
    /// Audio was offered over RTP/AVP but none of its codecs is ours.
    #[error("no codec in common")]
    NoCommonCodec,
    /// The chosen stream has no `c=` line at media or session level, so
    /// there is nowhere to send media.
    #[error("no connection address for the audio stream")]
    MissingConnection,
    /// The answer does not mirror the offer's m-lines (RFC 3264 §6).
    #[error("answer has {answered} m-lines but the offer had {offered}")]
    MediaCountMismatch { offered: usize, answered: usize },
    /// The answerer declined every audio stream we offered (port 0).
    #[error("the answer rejected the audio stream")]
    AudioRejected,
}

/// Stream direction attribute (RFC 8866 §6.7). Written from the point of
/// view of whoever wrote the SDP that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction the other party must take to match this one: what a
    /// peer sends we receive and vice versa (RFC 3264 §6.1).
    pub fn reverse(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the party described by this direction transmits media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the party described by this direction expects to get media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Builds a direction from its two capabilities; used to intersect what
    /// we wanted with what the peer allows.
    pub fn from_flags(sends: bool, receives: bool) -> Self {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The attribute name, as written in `a=` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Recognises a direction attribute name (case-insensitively, because
    /// some peers shout).
    pub fn from_attribute(name: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generic `a=` line. Kept verbatim so attributes we do not interpret
/// (`rtcp`, `maxptime`, `rtcp-xr`, ...) survive a parse/serialize cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=name:value`).
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A flag attribute (`a=name`).
    pub fn flag(name: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: None,
        }
    }

    /// Splits the text after `a=` at the first colon, which is where RFC
    /// 8866 puts the name/value boundary (values may contain colons).
    fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((name, value)) => Attribute::new(name.trim(), value.trim()),
            None => Attribute::flag(text.trim()),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}", self.name, v),
            None => write!(f, "a={}", self.name),
        }
    }
}

/// The `o=` line. RFC 3264 §8 identifies a re-offer by an unchanged session
/// id and a higher version, so both are kept as numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    /// `IP4` or `IP6` as written by the peer; kept as text so an unusual
    /// value in a field nobody routes on does not fail the whole call.
    pub address_type: String,
    pub address: String,
}

impl Origin {
    /// A fresh origin for a new session. The id is random (from the caller's `rng`, seeded
    /// where tests need to replay) so two calls from the same host never share one; it is
    /// kept below 2^62 because some implementations store it in a signed 64-bit integer.
    pub fn new(local_ip: IpAddr, rng: &mut impl Rng) -> Self {
        let session_id = rng.gen_range(1..(1u64 << 62));
        Origin {
            username: "-".to_string(),
            session_id,
            session_version: 1,
            address_type: addr_type(local_ip).to_string(),
            address: local_ip.to_string(),
        }
    }

    /// Marks a changed session description: every new offer or answer we
    /// send within the same dialog must carry a higher version (RFC 3264
    /// §8), otherwise the peer may ignore it as a retransmission.
    pub fn bump_version(&mut self) {
        self.session_version = self.session_version.wrapping_add(1);
    }

    fn parse(value: &str) -> Result<Self, String> {
        let fields: Vec<&str> = value.split_ascii_whitespace().collect();
        let [username, id, version, _nettype, addrtype, address] = fields[..] else {
            return Err(format!("expected 6 fields, found {}", fields.len()));
        };
        let session_id = id
            .parse::<u64>()
            .map_err(|_| format!("session id {} is not a number", quote(id)))?;
        let session_version = version
            .parse::<u64>()
            .map_err(|_| format!("session version {} is not a number", quote(version)))?;
        Ok(Origin {
            username: username.to_string(),
            session_id,
            session_version,
            address_type: addrtype.to_string(),
            address: address.to_string(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let username = if self.username.is_empty() {
            "-"
        } else {
            &self.username
        };
        write!(
            f,
            "o={} {} {} IN {} {}",
            username, self.session_id, self.session_version, self.address_type, self.address
        )
    }
}

/// A `c=` line. Only IP addresses are supported: a host name here would
/// need a DNS lookup in the media path, which no SIP peer we care about
/// requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub address: IpAddr,
}

impl Connection {
    /// Whether this is the RFC 2543 hold address (`0.0.0.0`, or `::`),
    /// which old equipment still sends to mean "do not send me media".
    pub fn is_hold(&self) -> bool {
        self.address.is_unspecified()
    }

    fn parse(value: &str) -> Result<Self, String> {
        let fields: Vec<&str> = value.split_ascii_whitespace().collect();
        let [nettype, addrtype, address] = fields[..] else {
            return Err(format!("expected 3 fields, found {}", fields.len()));
        };
        if !nettype.eq_ignore_ascii_case("IN") {
            return Err(format!("unsupported network type {}", quote(nettype)));
        }
        // Multicast addresses may carry /ttl and /count suffixes; only the
        // address itself matters for unicast telephony.
        let host = address.split('/').next().unwrap_or(address);
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("{} is not an IP address", quote(host)))?;
        let expected = addr_type(ip);
        if !addrtype.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "address {} does not match address type {}",
                quote(host),
                quote(addrtype)
            ));
        }
        Ok(Connection { address: ip })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c=IN {} {}", addr_type(self.address), self.address)
    }
}

impl From<IpAddr> for Connection {
    fn from(address: IpAddr) -> Self {
        Connection { address }
    }
}

/// An `a=rtpmap` line: binds a payload type to an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    /// Audio channel count; `None` means the RFC default of one.
    pub channels: Option<u8>,
}

impl RtpMap {
    fn parse(value: &str) -> Result<Self, String> {
        let (pt, rest) = split_first_word(value);
        let payload_type = parse_payload_type(pt)?;
        let mut parts = rest.split('/');
        let encoding = parts.next().unwrap_or("").trim();
        if encoding.is_empty() {
            return Err("missing encoding name".to_string());
        }
        let clock = parts.next().unwrap_or("").trim();
        let clock_rate = clock
            .parse::<u32>()
            .map_err(|_| format!("clock rate {} is not a number", quote(clock)))?;
        let channels = match parts.next() {
            None => None,
            Some(c) => Some(
                c.trim()
                    .parse::<u8>()
                    .map_err(|_| format!("channel count {} is not a number", quote(c)))?,
            ),
        };
        if parts.next().is_some() {
            return Err("too many '/' fields".to_string());
        }
        Ok(RtpMap {
            payload_type,
            encoding: encoding.to_string(),
            clock_rate,
            channels,
        })
    }

    /// Channel count with the default applied.
    fn channel_count(&self) -> u8 {
        self.channels.unwrap_or(1)
    }

    fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a=rtpmap:{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(ch) = self.channels {
            write!(f, "/{ch}")?;
        }
        Ok(())
    }
}

/// The audio entries of the RFC 3551 §6 static payload type table. Peers
/// may (and carriers often do) list these without an `a=rtpmap`, so we must
/// know them to interpret an offer at all.
const STATIC_PAYLOAD_TYPES: &[(u8, &str, u32, Option<u8>)] = &[
    (0, "PCMU", 8000, None),
    (3, "GSM", 8000, None),
    (4, "G723", 8000, None),
    (5, "DVI4", 8000, None),
    (6, "DVI4", 16000, None),
    (7, "LPC", 8000, None),
    (8, "PCMA", 8000, None),
    // G.722 samples at 16 kHz but RFC 3551 §4.5.2 fixes its RTP clock at 8000.
    (9, "G722", 8000, None),
    (10, "L16", 44100, Some(2)),
    (11, "L16", 44100, None),
    (12, "QCELP", 8000, None),
    (13, "CN", 8000, None),
    (14, "MPA", 90000, None),
    (15, "G728", 8000, None),
    (16, "DVI4", 11025, None),
    (17, "DVI4", 22050, None),
    (18, "G729", 8000, None),
];

/// The rtpmap implied by a static payload type, if it is an audio one.
pub fn static_rtpmap(payload_type: u8) -> Option<RtpMap> {
    STATIC_PAYLOAD_TYPES
        .iter()
        .find(|(pt, ..)| *pt == payload_type)
        .map(|&(pt, name, clock, channels)| RtpMap {
            payload_type: pt,
            encoding: name.to_string(),
            clock_rate: clock,
            channels,
        })
}

/// One `m=` section with the attributes Parley acts on pulled out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, ...
    pub kind: String,
    /// 0 means the stream is disabled/rejected (RFC 3264 §6).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: String,
    /// RTP payload types, in the sender's preference order.
    pub formats: Vec<u8>,
    /// Formats of non-RTP transports (e.g. `t38` for `udptl`), which are
    /// not payload numbers. Kept so we can decline such streams by echoing
    /// them back with port 0 instead of failing the whole offer.
    pub non_rtp_formats: Vec<String>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
    pub connection: Option<Connection>,
    /// Every other media-level attribute, in order.
    pub other: Vec<Attribute>,
}

impl MediaDescription {
    /// What `pt` means in this stream: its `a=rtpmap` if present, otherwise
    /// the static payload table. Dynamic types without an rtpmap resolve to
    /// `None` because guessing their meaning would produce noise.
    pub fn codec_of(&self, pt: u8) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|r| r.payload_type == pt)
            .cloned()
            .or_else(|| static_rtpmap(pt))
    }

    /// The format parameters of `pt`, if any.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.as_str())
    }

    /// Whether this stream is RTP, i.e. whether its formats are payload
    /// type numbers. Covers RTP/AVP, RTP/SAVP(F), UDP/TLS/RTP/SAVPF, ...
    pub fn is_rtp(&self) -> bool {
        proto_is_rtp(&self.proto)
    }

    fn parse(value: &str) -> Result<Self, String> {
        let mut fields = value.split_ascii_whitespace();
        let kind = fields.next().ok_or("missing media type")?;
        let port_text = fields.next().ok_or("missing port")?;
        let proto = fields.next().ok_or("missing transport protocol")?;
        if port_text.contains('/') {
            return Err(format!(
                "port {} uses a port count, which is not supported",
                quote(port_text)
            ));
        }
        let port = port_text
            .parse::<u16>()
            .map_err(|_| format!("port {} is not a number 0-65535", quote(port_text)))?;
        let mut media = MediaDescription {
            kind: kind.to_string(),
            port,
            proto: proto.to_string(),
            ..Default::default()
        };
        for fmt in fields {
            if media.is_rtp() {
                media.formats.push(parse_payload_type(fmt)?);
            } else {
                media.non_rtp_formats.push(fmt.to_string());
            }
        }
        Ok(media)
    }

    /// Files a media-level attribute into the field that interprets it.
    fn add_attribute(&mut self, attr: Attribute) -> Result<(), String> {
        let name = attr.name.to_ascii_lowercase();
        let value = attr.value.as_deref();
        // Only audio is negotiated: a malformed rtpmap/fmtp on another stream (RFC 4475's
        // esc01 and longreq carry `a=rtpmap:31 LPC` on video) must not fail the call, since
        // that stream is declined with port 0 anyway.
        if !self.kind.eq_ignore_ascii_case("audio") && (name == "rtpmap" || name == "fmtp") {
            let parses = match (name.as_str(), value) {
                ("rtpmap", Some(v)) => RtpMap::parse(v).is_ok(),
                ("fmtp", Some(v)) => parse_payload_type(split_first_word(v).0).is_ok(),
                _ => false,
            };
            if !parses {
                self.other.push(attr);
                return Ok(());
            }
        }
        match (name.as_str(), value) {
            ("rtpmap", Some(v)) if self.is_rtp() => {
                self.rtpmaps
                    .push(RtpMap::parse(v).map_err(|e| format!("bad rtpmap: {e}"))?);
            }
            ("rtpmap", None) if self.is_rtp() => return Err("bad rtpmap: no value".into()),
            ("fmtp", Some(v)) if self.is_rtp() => {
                let (pt, params) = split_first_word(v);
                let pt = parse_payload_type(pt).map_err(|e| format!("bad fmtp: {e}"))?;
                self.fmtps.push((pt, params.to_string()));
            }
            ("fmtp", None) if self.is_rtp() => return Err("bad fmtp: no value".into()),
            ("ptime", v) => {
                self.ptime =
                    Some(parse_ptime(v.unwrap_or("")).map_err(|e| format!("bad ptime: {e}"))?);
            }
            _ => {
                if let Some(dir) = Direction::from_attribute(&attr.name) {
                    // RFC 8866 allows one direction per stream; if a peer
                    // sends several, the first wins rather than failing.
                    self.direction.get_or_insert(dir);
                } else {
                    self.other.push(attr);
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {} {}", self.kind, self.port, self.proto)?;
        for pt in &self.formats {
            write!(f, " {pt}")?;
        }
        for fmt in &self.non_rtp_formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(c) = &self.connection {
            write!(f, "{c}\r\n")?;
        }
        for map in &self.rtpmaps {
            write!(f, "{map}\r\n")?;
        }
        for (pt, params) in &self.fmtps {
            write!(f, "a=fmtp:{pt} {params}\r\n")?;
        }
        if let Some(ptime) = self.ptime {
            write!(f, "a=ptime:{ptime}\r\n")?;
        }
        if let Some(dir) = self.direction {
            write!(f, "a={dir}\r\n")?;
        }
        for attr in &self.other {
            write!(f, "{attr}\r\n")?;
        }
        Ok(())
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level `c=`; applies to every m-line without its own.
    pub connection: Option<Connection>,
    pub media: Vec<MediaDescription>,
    /// Session-level attributes, preserved in order (including a
    /// session-level direction, which [`SessionDescription::direction`]
    /// interprets).
    pub attributes: Vec<Attribute>,
}

impl SessionDescription {
    /// Parses an SDP body. See the module docs for what is tolerated.
    ///
    /// Timing (`t=`, `r=`, `z=`), bandwidth, key and informational lines
    /// are skipped: SIP sessions are unbounded and we serialize `t=0 0`.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut saw_version = false;
        let mut origin: Option<Origin> = None;
        let mut session_name: Option<String> = None;
        let mut connection = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| SdpError::Syntax {
                line: line_no,
                message,
            };
            let Some((kind, value)) = split_line(line) else {
                return Err(err(format!(
                    "expected <type>=<value>, found {}",
                    quote(line)
                )));
            };
            if !saw_version {
                if kind == 'v' && value.trim() == "0" {
                    saw_version = true;
                    continue;
                }
                return Err(err(format!(
                    "first line must be v=0, found {}",
                    quote(line)
                )));
            }
            match kind {
                'v' => return Err(err("unexpected second v= line".to_string())),
                'o' => {
                    if origin.is_some() {
                        return Err(err("duplicate o= line".to_string()));
                    }
                    let parsed =
                        Origin::parse(value).map_err(|e| err(format!("bad o= line: {e}")))?;
                    origin = Some(parsed);
                }
                // Only the first session-level s= counts; media-level ones
                // are not valid SDP and are dropped.
                's' if media.is_empty() && session_name.is_none() => {
                    session_name = Some(value.trim().to_string());
                }
                'c' => {
                    let c =
                        Connection::parse(value).map_err(|e| err(format!("bad c= line: {e}")))?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => connection = Some(c),
                    }
                }
                'm' => {
                    let m = MediaDescription::parse(value)
                        .map_err(|e| err(format!("bad m= line: {e}")))?;
                    media.push(m);
                }
                'a' => {
                    let attr = Attribute::parse(value);
                    match media.last_mut() {
                        Some(m) => m.add_attribute(attr).map_err(err)?,
                        None => attributes.push(attr),
                    }
                }
                _ => {}
            }
        }

        if !saw_version {
            return Err(SdpError::Empty);
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::MissingOrigin)?,
            session_name: session_name.unwrap_or_default(),
            connection,
            media,
            attributes,
        })
    }

    /// The session-level direction attribute, if any; it applies to every
    /// m-line that has none of its own (RFC 8866 §6.7).
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// The direction in force for media line `index`, defaulting to
    /// sendrecv as RFC 8866 §6.7 specifies.
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(|m| m.direction)
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// The connection in force for media line `index` (its own `c=` or the
    /// session's).
    pub fn media_connection(&self, index: usize) -> Option<Connection> {
        self.media
            .get(index)
            .and_then(|m| m.connection)
            .or(self.connection)
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\n{}\r\n", self.origin)?;
        // s= must not be empty; RFC 8866 §5.3 suggests a single space when
        // there is no name, which also parses back to an empty name.
        let name = if self.session_name.is_empty() {
            " "
        } else {
            &self.session_name
        };
        write!(f, "s={name}\r\n")?;
        if let Some(c) = &self.connection {
            write!(f, "{c}\r\n")?;
        }
        f.write_str("t=0 0\r\n")?;
        for attr in &self.attributes {
            write!(f, "{attr}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// Static facts about a codec Parley can run. Adding a codec means adding a
/// [`Codec`] variant, one arm in [`Codec::info`] and an entry in
/// [`Codec::ALL`]; the offer/answer logic is table-driven.
#[derive(Debug, Clone, Copy)]
struct CodecInfo {
    /// Encoding name as used in `a=rtpmap` (matched case-insensitively).
    encoding: &'static str,
    /// RTP clock rate, which is not always the sample rate (G.722).
    clock_rate: u32,
    channels: u8,
    /// RFC 3551 static payload type; `None` means a dynamic one is
    /// allocated when we offer.
    static_pt: Option<u8>,
    /// `a=fmtp` parameters we put in our own offers.
    offer_fmtp: Option<&'static str>,
}

/// Audio codecs Parley's media engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 wideband (16 kHz audio, 8 kHz RTP clock per RFC 3551).
    G722,
    /// Opus (RFC 7587: always `opus/48000/2` in SDP, whatever is sent).
    Opus,
}

impl Codec {
    /// Every supported codec, for reverse lookups from an rtpmap.
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    fn info(self) -> CodecInfo {
        match self {
            Codec::Pcmu => CodecInfo {
                encoding: "PCMU",
                clock_rate: 8000,
                channels: 1,
                static_pt: Some(0),
                offer_fmtp: None,
            },
            Codec::Pcma => CodecInfo {
                encoding: "PCMA",
                clock_rate: 8000,
                channels: 1,
                static_pt: Some(8),
                offer_fmtp: None,
            },
            Codec::G722 => CodecInfo {
                encoding: "G722",
                clock_rate: 8000,
                channels: 1,
                static_pt: Some(9),
                offer_fmtp: None,
            },
            Codec::Opus => CodecInfo {
                encoding: "opus",
                clock_rate: 48000,
                channels: 2,
                static_pt: None,
                offer_fmtp: Some("useinbandfec=1"),
            },
        }
    }

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        self.info().encoding
    }

    /// The RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        self.info().clock_rate
    }

    /// The number of audio channels.
    pub fn channels(self) -> u8 {
        self.info().channels
    }

    /// The RFC 3551 static payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        self.info().static_pt
    }

    /// Whether an rtpmap (explicit or static) denotes this codec. Names
    /// compare case-insensitively as RFC 4855 §3 requires.
    pub fn matches(self, map: &RtpMap) -> bool {
        let info = self.info();
        map.encoding.eq_ignore_ascii_case(info.encoding)
            && map.clock_rate == info.clock_rate
            && map.channel_count() == info.channels
    }

    /// The codec an rtpmap denotes, if we support it.
    pub fn from_rtpmap(map: &RtpMap) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.matches(map))
    }

    /// The rtpmap to advertise this codec under `payload_type`.
    pub fn rtpmap(self, payload_type: u8) -> RtpMap {
        let info = self.info();
        RtpMap {
            payload_type,
            encoding: info.encoding.to_string(),
            clock_rate: info.clock_rate,
            channels: (info.channels != 1).then_some(info.channels),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What this endpoint is willing to do, used for both offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCaps {
    /// Supported codecs in our preference order (used when we offer; when
    /// we answer, the offerer's order wins).
    pub codecs: Vec<Codec>,
    /// Whether we handle RFC 4733 DTMF events.
    pub telephone_event: bool,
    /// Our packet time in milliseconds.
    pub ptime_ms: u32,
}

impl LocalCaps {
    /// G.711 only (µ-law, A-law) with DTMF events: what every telephony peer takes.
    pub fn narrowband() -> Self {
        LocalCaps {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            ..LocalCaps::default()
        }
    }
}

impl Default for LocalCaps {
    /// G.711 µ-law first because it is the North American default and the
    /// one codec every SIP endpoint implements; A-law second for European
    /// carriers; then the wideband codecs, G.722 and Opus, which are taken
    /// whenever the caller prefers them; DTMF events on, since IVR-style
    /// agents need digits.
    fn default() -> Self {
        LocalCaps {
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus],
            telephone_event: true,
            ptime_ms: DEFAULT_PTIME_MS,
        }
    }
}

/// The outcome of offer/answer: everything the media layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type to put in the RTP packets we send (and expect).
    pub payload_type: u8,
    /// The payload type for RFC 4733 events, if both sides support them.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP; `None` when the peer is on hold with the
    /// `0.0.0.0` address or disabled the stream with port 0.
    pub remote_addr: Option<SocketAddr>,
    /// OUR direction: whether we may send and should expect media.
    pub direction: Direction,
    pub ptime_ms: u32,
}

/// Answers an SDP offer (RFC 3264 §6).
///
/// The first audio stream over `RTP/AVP` with a non-zero port and a codec
/// we support is accepted; all other m-lines are declined with port 0 so
/// the answer mirrors the offer line for line. The codec is the first of
/// the offerer's formats we support, honouring the offerer's preference as
/// §6.1 recommends, and payload types are echoed as offered so dynamic
/// numbers (e.g. telephone-event at 96 or 101) keep working.
pub fn answer(
    offer: &SessionDescription,
    caps: &LocalCaps,
    local_ip: IpAddr,
    local_port: u16,
    origin: &Origin,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let mut unsupported_proto: Option<&str> = None;
    let mut saw_avp_audio = false;
    let mut chosen = None;
    for (index, m) in offer.media.iter().enumerate() {
        if !m.kind.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        if !m.proto.eq_ignore_ascii_case("RTP/AVP") {
            unsupported_proto.get_or_insert(&m.proto);
            continue;
        }
        saw_avp_audio = true;
        if let Some((codec, pt)) = choose_codec(m, &caps.codecs) {
            chosen = Some((index, codec, pt));
            break;
        }
    }
    let Some((index, codec, payload_type)) = chosen else {
        return Err(if saw_avp_audio {
            NegotiationError::NoCommonCodec
        } else if let Some(proto) = unsupported_proto {
            NegotiationError::UnsupportedTransport(proto.to_string())
        } else {
            NegotiationError::NoAudio
        });
    };

    let offered = &offer.media[index];
    let connection = offer
        .media_connection(index)
        .ok_or(NegotiationError::MissingConnection)?;
    let peer_direction = effective_peer_direction(offer.media_direction(index), connection);
    let direction = peer_direction.reverse();
    let remote_addr = remote_addr(connection, offered.port);
    let ptime_ms = offered
        .ptime
        .filter(|p| (MIN_PEER_PTIME_MS..=MAX_PEER_PTIME_MS).contains(p))
        .unwrap_or(caps.ptime_ms);
    let telephone_event_pt = if caps.telephone_event {
        find_telephone_event(offered, codec.clock_rate())
    } else {
        None
    };

    let mut accepted = MediaDescription {
        kind: offered.kind.clone(),
        port: local_port,
        proto: offered.proto.clone(),
        direction: Some(direction),
        ptime: Some(ptime_ms),
        ..Default::default()
    };
    // Our codec under the offerer's number, with the offerer's rtpmap
    // spelling when it gave one, and its fmtp (e.g. G.729 annexb=no) since
    // those parameters describe the stream both sides agree on.
    for pt in std::iter::once(payload_type).chain(telephone_event_pt) {
        accepted.formats.push(pt);
        if let Some(map) = offered.codec_of(pt) {
            accepted.rtpmaps.push(map);
        }
        if let Some(params) = offered.fmtp(pt) {
            accepted.fmtps.push((pt, params.to_string()));
        }
    }

    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == index {
                accepted.clone()
            } else {
                rejected_media(m)
            }
        })
        .collect();
    let sdp = SessionDescription {
        origin: origin.clone(),
        session_name: "-".to_string(),
        connection: Some(Connection::from(local_ip)),
        media,
        attributes: Vec::new(),
    };
    let negotiated = Negotiated {
        codec,
        payload_type,
        telephone_event_pt,
        remote_addr,
        direction,
        ptime_ms,
    };
    Ok((sdp, negotiated))
}

/// Builds our offer: one audio stream with every codec in `caps` (static
/// payload types where they exist, dynamic ones from 96 otherwise) and, if
/// enabled, telephone-event at 101 (`0-16`: the digits, `*`, `#`, A-D and
/// flash) for each clock rate in use.
///
/// An empty `caps.codecs` yields an m-line without formats, which peers
/// will reject; that is a configuration error the caller should prevent.
pub fn offer(
    caps: &LocalCaps,
    local_ip: IpAddr,
    local_port: u16,
    origin: &Origin,
    direction: Direction,
) -> SessionDescription {
    let mut media = MediaDescription {
        kind: "audio".to_string(),
        port: local_port,
        proto: "RTP/AVP".to_string(),
        direction: Some(direction),
        ptime: Some(caps.ptime_ms),
        ..Default::default()
    };
    let mut used: Vec<u8> = Vec::new();
    if caps.telephone_event {
        used.push(TELEPHONE_EVENT_PT);
    }
    let mut clock_rates: Vec<u32> = Vec::new();
    for &codec in &caps.codecs {
        if media.rtpmaps.iter().any(|m| codec.matches(m)) {
            continue;
        }
        let Some(pt) = codec
            .static_payload_type()
            .or_else(|| allocate_dynamic_pt(&used))
        else {
            continue;
        };
        used.push(pt);
        media.formats.push(pt);
        media.rtpmaps.push(codec.rtpmap(pt));
        if let Some(params) = codec.info().offer_fmtp {
            media.fmtps.push((pt, params.to_string()));
        }
        if !clock_rates.contains(&codec.clock_rate()) {
            clock_rates.push(codec.clock_rate());
        }
    }
    if caps.telephone_event {
        for rate in clock_rates {
            let pt = if rate == 8000 {
                Some(TELEPHONE_EVENT_PT)
            } else {
                allocate_dynamic_pt(&used)
            };
            let Some(pt) = pt else { continue };
            used.push(pt);
            media.formats.push(pt);
            media.rtpmaps.push(RtpMap {
                payload_type: pt,
                encoding: "telephone-event".to_string(),
                clock_rate: rate,
                channels: None,
            });
            media.fmtps.push((pt, "0-16".to_string()));
        }
    }
    SessionDescription {
        origin: origin.clone(),
        session_name: "-".to_string(),
        connection: Some(Connection::from(local_ip)),
        media: vec![media],
        attributes: Vec::new(),
    }
}

/// Interprets the answer to an offer we made (UAC side).
///
/// The codec is the first of the answer's formats that we offered, and we
/// send with the answer's payload numbers because they state what the
/// answerer expects to receive. Our direction is the reverse of the
/// answer's, narrowed to what we offered (an answer cannot widen it).
pub fn accept_answer(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    if our_offer.media.len() != answer.media.len() {
        return Err(NegotiationError::MediaCountMismatch {
            offered: our_offer.media.len(),
            answered: answer.media.len(),
        });
    }
    let mut saw_audio = false;
    let mut saw_accepted = false;
    for (index, (ours, theirs)) in our_offer.media.iter().zip(&answer.media).enumerate() {
        if !ours.kind.eq_ignore_ascii_case("audio") || ours.port == 0 {
            continue;
        }
        saw_audio = true;
        if theirs.port == 0 {
            continue;
        }
        saw_accepted = true;
        // Dynamic types should carry an rtpmap in the answer too, but fall
        // back to our own mapping when the answerer left it out.
        let meaning = |pt: u8| theirs.codec_of(pt).or_else(|| ours.codec_of(pt));
        let offered_codecs: Vec<Codec> = ours
            .formats
            .iter()
            .filter_map(|&pt| ours.codec_of(pt))
            .filter_map(|map| Codec::from_rtpmap(&map))
            .collect();
        let Some((codec, payload_type)) = theirs.formats.iter().find_map(|&pt| {
            let codec = meaning(pt).and_then(|map| Codec::from_rtpmap(&map))?;
            offered_codecs.contains(&codec).then_some((codec, pt))
        }) else {
            continue;
        };
        let we_offered_events = ours
            .formats
            .iter()
            .filter_map(|&pt| ours.codec_of(pt))
            .any(|m| m.is_telephone_event() && m.clock_rate == codec.clock_rate());
        let telephone_event_pt = if we_offered_events {
            theirs.formats.iter().copied().find(|&pt| {
                meaning(pt)
                    .is_some_and(|m| m.is_telephone_event() && m.clock_rate == codec.clock_rate())
            })
        } else {
            None
        };
        let connection = answer
            .media_connection(index)
            .ok_or(NegotiationError::MissingConnection)?;
        let peer_direction = effective_peer_direction(answer.media_direction(index), connection);
        let wanted = our_offer.media_direction(index);
        let allowed = peer_direction.reverse();
        let direction = Direction::from_flags(
            wanted.sends() && allowed.sends(),
            wanted.receives() && allowed.receives(),
        );
        let ptime_ms = theirs
            .ptime
            .filter(|p| (MIN_PEER_PTIME_MS..=MAX_PEER_PTIME_MS).contains(p))
            .or(ours.ptime)
            .unwrap_or(DEFAULT_PTIME_MS);
        return Ok(Negotiated {
            codec,
            payload_type,
            telephone_event_pt,
            remote_addr: remote_addr(connection, theirs.port),
            direction,
            ptime_ms,
        });
    }
    Err(if !saw_audio {
        NegotiationError::NoAudio
    } else if saw_accepted {
        NegotiationError::NoCommonCodec
    } else {
        NegotiationError::AudioRejected
    })
}

/// The first offered format we support, in the offerer's order.
fn choose_codec(media: &MediaDescription, ours: &[Codec]) -> Option<(Codec, u8)> {
    media.formats.iter().find_map(|&pt| {
        let map = media.codec_of(pt)?;
        ours.iter().find(|c| c.matches(&map)).map(|&c| (c, pt))
    })
}

/// The offered telephone-event payload type whose clock matches the audio
/// codec's, as RFC 4733 §2.5.1.2 requires for the events to be usable.
fn find_telephone_event(media: &MediaDescription, clock_rate: u32) -> Option<u8> {
    media.formats.iter().copied().find(|&pt| {
        media
            .codec_of(pt)
            .is_some_and(|m| m.is_telephone_event() && m.clock_rate == clock_rate)
    })
}

/// The peer's direction after accounting for the RFC 2543 hold address:
/// `c=0.0.0.0` means "do not send to me" even when the direction attribute
/// (often absent in such offers) says otherwise.
fn effective_peer_direction(stated: Direction, connection: Connection) -> Direction {
    if connection.is_hold() {
        Direction::from_flags(stated.sends(), false)
    } else {
        stated
    }
}

fn remote_addr(connection: Connection, port: u16) -> Option<SocketAddr> {
    (!connection.is_hold() && port != 0).then(|| SocketAddr::new(connection.address, port))
}

/// A declined stream: same media type, transport and formats as offered,
/// port 0 (RFC 3264 §6 requires at least one format to stay listed).
fn rejected_media(offered: &MediaDescription) -> MediaDescription {
    MediaDescription {
        kind: offered.kind.clone(),
        port: 0,
        proto: offered.proto.clone(),
        formats: offered.formats.clone(),
        non_rtp_formats: offered.non_rtp_formats.clone(),
        ..Default::default()
    }
}

fn allocate_dynamic_pt(used: &[u8]) -> Option<u8> {
    (DYNAMIC_PT_FIRST..=DYNAMIC_PT_LAST).find(|pt| !used.contains(pt))
}

fn proto_is_rtp(proto: &str) -> bool {
    proto.to_ascii_uppercase().contains("RTP/")
}

fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Splits `x=value`; the type must be one ASCII letter (RFC 8866 §5).
fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !kind.is_ascii_alphabetic() || chars.next()? != '=' {
        return None;
    }
    // Both characters are ASCII, so byte 2 is a char boundary.
    Some((kind, &line[2..]))
}

/// Splits off the first whitespace-delimited word, trimming both parts.
fn split_first_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((first, rest)) => (first, rest.trim()),
        None => (text, ""),
    }
}

fn parse_payload_type(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(format!(
            "payload type {} is not a number 0-127",
            quote(text)
        )),
    }
}

/// Accepts integral milliseconds and, because some peers write `20.0`,
/// decimal values (the fraction is dropped). Zero is meaningless.
fn parse_ptime(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(format!("{} is not a number", quote(text)));
    }
    match whole.parse::<u32>() {
        Ok(0) => Err("packet time must be positive".to_string()),
        Ok(ms) => Ok(ms),
        Err(_) => Err(format!("{} is out of range", quote(text))),
    }
}

/// Quotes user-supplied text for an error message, shortened to keep logs
/// readable.
fn quote(text: &str) -> String {
    if text.chars().count() > ERROR_QUOTE_CHARS {
        let short: String = text.chars().take(ERROR_QUOTE_CHARS).collect();
        format!("{short:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SOFTPHONE_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.10\r\n\
b=AS:380\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=rtpmap:98 speex/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=fmtp:100 0-16\r\n\
a=rtcp:7079\r\n\
a=sendrecv\r\n\
a=rtcp-fb:* trr-int 1000\r\n";

    // Bare \n line ends and trailing blanks, as some SBCs emit.
    const CARRIER_OFFER: &str = "v=0\n\
o=- 1234567 1 IN IP4 203.0.113.5 \n\
s=SBC call\n\
c=IN IP4 203.0.113.5\n\
t=0 0\n\
m=audio 30000 RTP/AVP 8 96\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:96 telephone-event/8000\n\
a=fmtp:96 0-16\n\
a=ptime:30\n\
a=maxptime:40\n";

    const IPV6_OFFER: &str = "v=0\r\n\
o=bob 42 42 IN IP6 2001:db8::1\r\n\
s=-\r\n\
c=IN IP6 2001:db8::1\r\n\
t=0 0\r\n\
m=audio 5004 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

    const HOLD_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844528 IN IP4 192.0.2.10\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 7078 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendonly\r\n";

    const LEGACY_HOLD_OFFER: &str = "v=0\r\n\
o=pbx 77 78 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 0.0.0.0\r\n\
t=0 0\r\n\
m=audio 12000 RTP/AVP 0\r\n";

    fn local_ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    }

    fn our_origin() -> Origin {
        Origin {
            username: "parley".into(),
            session_id: 1000,
            session_version: 1,
            address_type: "IP4".into(),
            address: "10.0.0.2".into(),
        }
    }

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text).expect("valid SDP")
    }

    fn do_answer(text: &str) -> Result<(SessionDescription, Negotiated), NegotiationError> {
        answer(
            &parse(text),
            &LocalCaps::narrowband(),
            local_ip(),
            40000,
            &our_origin(),
        )
    }

    fn assert_round_trip(text: &str) -> SessionDescription {
        let sdp = parse(text);
        let serialized = sdp.to_string();
        assert!(serialized.ends_with("\r\n"));
        assert!(
            !serialized.replace("\r\n", "").contains('\n'),
            "bare LF in {serialized:?}"
        );
        assert_eq!(parse(&serialized), sdp, "round trip changed {serialized}");
        sdp
    }

    #[test]
    fn parses_softphone_offer() {
        let sdp = assert_round_trip(SOFTPHONE_OFFER);
        assert_eq!(sdp.origin.username, "alice");
        assert_eq!(sdp.origin.session_id, 2890844526);
        assert_eq!(sdp.origin.session_version, 2890844527);
        assert_eq!(sdp.origin.address_type, "IP4");
        assert_eq!(sdp.session_name, "Talk");
        assert_eq!(
            sdp.connection,
            Some(Connection {
                address: "192.0.2.10".parse().unwrap()
            })
        );
        assert_eq!(sdp.attributes.len(), 1);
        assert_eq!(sdp.attributes[0].name, "rtcp-xr");
        assert_eq!(
            sdp.attributes[0].value.as_deref(),
            Some("rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics")
        );
        let m = &sdp.media[0];
        assert_eq!(m.kind, "audio");
        assert_eq!(m.port, 7078);
        assert_eq!(m.formats, vec![96, 97, 98, 0, 8, 18, 101, 99, 100]);
        assert_eq!(m.rtpmaps.len(), 7);
        assert_eq!(
            m.codec_of(96),
            Some(RtpMap {
                payload_type: 96,
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: Some(2)
            })
        );
        assert_eq!(m.fmtp(100), Some("0-16"));
        assert_eq!(m.fmtp(18), Some("annexb=no"));
        assert_eq!(m.direction, Some(Direction::SendRecv));
        assert_eq!(m.ptime, None);
        assert_eq!(
            m.other,
            vec![
                Attribute::new("rtcp", "7079"),
                Attribute::new("rtcp-fb", "* trr-int 1000")
            ]
        );
    }

    #[test]
    fn serializes_in_standard_order() {
        let text = parse(SOFTPHONE_OFFER).to_string();
        let expected = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:97 speex/16000\r\n\
a=rtpmap:98 speex/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=fmtp:18 annexb=no\r\n\
a=fmtp:100 0-16\r\n\
a=sendrecv\r\n\
a=rtcp:7079\r\n\
a=rtcp-fb:* trr-int 1000\r\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn parses_carrier_offer_with_bare_lf() {
        let sdp = assert_round_trip(CARRIER_OFFER);
        assert_eq!(sdp.origin.username, "-");
        assert_eq!(sdp.origin.address, "203.0.113.5");
        assert_eq!(sdp.media[0].formats, vec![8, 96]);
        assert_eq!(sdp.media[0].ptime, Some(30));
        assert_eq!(sdp.media[0].direction, None);
        assert_eq!(sdp.media[0].other, vec![Attribute::new("maxptime", "40")]);
    }

    #[test]
    fn parses_ipv6() {
        let sdp = assert_round_trip(IPV6_OFFER);
        assert_eq!(sdp.origin.address_type, "IP6");
        assert_eq!(sdp.origin.address, "2001:db8::1");
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(sdp.connection.unwrap().address, IpAddr::V6(ip));
        assert!(sdp.to_string().contains("c=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn parses_hold_offers() {
        let sdp = assert_round_trip(HOLD_OFFER);
        assert_eq!(sdp.media[0].direction, Some(Direction::SendOnly));
        let legacy = assert_round_trip(LEGACY_HOLD_OFFER);
        assert!(legacy.connection.unwrap().is_hold());
    }

    #[test]
    fn media_level_connection_and_session_direction() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=recvonly\r\n\
m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.99/127\r\n\
m=audio 4002 RTP/AVP 8\r\na=inactive\r\n";
        let sdp = assert_round_trip(text);
        assert_eq!(sdp.connection, None);
        assert_eq!(
            sdp.media_connection(0).unwrap().address,
            "192.0.2.99".parse::<IpAddr>().unwrap()
        );
        assert_eq!(sdp.media_connection(1), None);
        assert_eq!(sdp.media_direction(0), Direction::RecvOnly);
        assert_eq!(sdp.media_direction(1), Direction::Inactive);
    }

    #[test]
    fn keeps_non_rtp_formats() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=image 5000 udptl t38\r\na=T38FaxVersion:0\r\na=fmtp:whatever\r\n";
        let sdp = assert_round_trip(text);
        assert_eq!(sdp.media[0].non_rtp_formats, vec!["t38".to_string()]);
        assert!(sdp.media[0].formats.is_empty());
        assert_eq!(sdp.media[0].other.len(), 2);
    }

    #[test]
    fn static_payload_types_resolve_without_rtpmap() {
        let m = MediaDescription {
            formats: vec![0, 8, 9, 18, 97],
            ..Default::default()
        };
        let name = |pt| m.codec_of(pt).map(|r| (r.encoding, r.clock_rate));
        assert_eq!(name(0), Some(("PCMU".to_string(), 8000)));
        assert_eq!(name(8), Some(("PCMA".to_string(), 8000)));
        assert_eq!(name(9), Some(("G722".to_string(), 8000)));
        assert_eq!(name(18), Some(("G729".to_string(), 8000)));
        assert_eq!(name(97), None);
    }

    #[test]
    fn direction_helpers() {
        use Direction::*;
        assert_eq!(SendOnly.reverse(), RecvOnly);
        assert_eq!(RecvOnly.reverse(), SendOnly);
        assert_eq!(SendRecv.reverse(), SendRecv);
        assert_eq!(Inactive.reverse(), Inactive);
        assert!(SendRecv.sends() && SendRecv.receives());
        assert!(SendOnly.sends() && !SendOnly.receives());
        assert!(!RecvOnly.sends() && RecvOnly.receives());
        assert!(!Inactive.sends() && !Inactive.receives());
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(Direction::from_flags(d.sends(), d.receives()), d);
            assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        }
        assert_eq!(Direction::from_attribute("SENDONLY"), Some(SendOnly));
        assert_eq!(Direction::from_attribute("rtcp"), None);
    }

    #[test]
    fn wideband_codecs_are_taken_when_the_caller_prefers_them() {
        let caps = LocalCaps::default();
        let (sdp, neg) = answer(
            &parse(SOFTPHONE_OFFER),
            &caps,
            local_ip(),
            40000,
            &our_origin(),
        )
        .unwrap();
        assert_eq!(neg.codec, Codec::Opus);
        assert_eq!(neg.payload_type, 96);
        // Opus's RTP clock is 48 kHz, so the 48 kHz telephone-event (101) goes with it.
        assert_eq!(neg.telephone_event_pt, Some(101));
        assert!(
            sdp.to_string().contains("a=rtpmap:96 opus/48000/2\r\n"),
            "{sdp}"
        );
        let g722 = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (_, neg) = answer(&parse(g722), &caps, local_ip(), 40000, &our_origin()).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::G722, 9));
        assert_eq!(neg.telephone_event_pt, Some(101));
        // Our own offer lists every codec, G.711 first, Opus on a dynamic type with FEC.
        let ours = offer(&caps, local_ip(), 40000, &our_origin(), Direction::SendRecv).to_string();
        assert!(ours.contains("m=audio 40000 RTP/AVP 0 8 9 96"), "{ours}");
        assert!(ours.contains("a=rtpmap:96 opus/48000/2\r\n"), "{ours}");
        assert!(ours.contains("a=fmtp:96 useinbandfec=1\r\n"), "{ours}");
        assert!(
            ours.contains("a=rtpmap:97 telephone-event/48000\r\n"),
            "{ours}"
        );
    }

    #[test]
    fn answer_honours_offerer_preference_and_event_clock() {
        let (sdp, neg) = do_answer(SOFTPHONE_OFFER).unwrap();
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.payload_type, 0);
        // 101 is telephone-event/48000 here; only 100 matches PCMU's clock.
        assert_eq!(neg.telephone_event_pt, Some(100));
        assert_eq!(neg.remote_addr, Some("192.0.2.10:7078".parse().unwrap()));
        assert_eq!(neg.direction, Direction::SendRecv);
        assert_eq!(neg.ptime_ms, 20);
        let expected = "v=0\r\n\
o=parley 1000 1 IN IP4 10.0.0.2\r\n\
s=-\r\n\
c=IN IP4 10.0.0.2\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 100\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=fmtp:100 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
        assert_eq!(sdp.to_string(), expected);
    }

    #[test]
    fn answer_prefers_offer_order_over_ours() {
        // We prefer PCMU, but the offerer lists PCMA first.
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 0\r\n";
        let (sdp, neg) = do_answer(text).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(neg.payload_type, 8);
        assert_eq!(neg.telephone_event_pt, None);
        assert_eq!(sdp.media[0].formats, vec![8]);
    }

    #[test]
    fn answer_carrier_pcma_keeps_dynamic_event_pt_and_ptime() {
        let (sdp, neg) = do_answer(CARRIER_OFFER).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(neg.payload_type, 8);
        assert_eq!(neg.telephone_event_pt, Some(96));
        assert_eq!(neg.ptime_ms, 30);
        let m = &sdp.media[0];
        assert_eq!(m.formats, vec![8, 96]);
        assert_eq!(m.fmtp(96), Some("0-16"));
        assert_eq!(m.ptime, Some(30));
        assert_eq!(m.port, 40000);
        assert!(sdp
            .to_string()
            .contains("a=rtpmap:96 telephone-event/8000\r\n"));
    }

    #[test]
    fn answer_uses_dynamic_pt_bound_to_known_codec() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 97\r\na=rtpmap:97 pcmu/8000\r\n";
        let (sdp, neg) = do_answer(text).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 97));
        assert_eq!(sdp.media[0].rtpmaps[0].encoding, "pcmu");
    }

    #[test]
    fn answer_static_types_without_rtpmap() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 18 8\r\n";
        let (_, neg) = do_answer(text).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    }

    #[test]
    fn answer_without_telephone_event_cap() {
        let caps = LocalCaps {
            telephone_event: false,
            ..LocalCaps::default()
        };
        let (sdp, neg) = answer(
            &parse(CARRIER_OFFER),
            &caps,
            local_ip(),
            40000,
            &our_origin(),
        )
        .unwrap();
        assert_eq!(neg.telephone_event_pt, None);
        assert_eq!(sdp.media[0].formats, vec![8]);
        assert!(sdp.media[0].fmtps.is_empty());
    }

    #[test]
    fn answer_rejects_video_and_keeps_line_order() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 4000 RTP/AVP 0\r\n\
m=image 6000 udptl t38\r\n";
        let (sdp, neg) = do_answer(text).unwrap();
        assert_eq!(sdp.media.len(), 4);
        let ports: Vec<u16> = sdp.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, vec![0, 0, 40000, 0]);
        let kinds: Vec<&str> = sdp.media.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, vec!["video", "audio", "audio", "image"]);
        assert_eq!(sdp.media[0].formats, vec![96]);
        assert_eq!(sdp.media[3].non_rtp_formats, vec!["t38".to_string()]);
        assert!(sdp.media[0].rtpmaps.is_empty());
        assert_eq!(neg.remote_addr, Some("192.0.2.1:4000".parse().unwrap()));
        // The answer itself must be valid SDP.
        assert_eq!(parse(&sdp.to_string()), sdp);
    }

    #[test]
    fn answer_skips_audio_line_without_common_codec() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 18\r\n\
m=audio 4002 RTP/AVP 8\r\n";
        let (sdp, neg) = do_answer(text).unwrap();
        assert_eq!(sdp.media[0].port, 0);
        assert_eq!(sdp.media[1].port, 40000);
        assert_eq!(neg.remote_addr, Some("192.0.2.1:4002".parse().unwrap()));
    }

    #[test]
    fn answer_directions_follow_rfc3264() {
        let cases = [
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
            ("a=sendrecv\r\n", Direction::SendRecv),
            ("", Direction::SendRecv),
        ];
        for (attr, ours) in cases {
            let text = format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n{attr}"
            );
            let (sdp, neg) = do_answer(&text).unwrap();
            assert_eq!(neg.direction, ours, "offer {attr:?}");
            assert_eq!(sdp.media[0].direction, Some(ours));
            // RFC 3264 hold keeps the address: we still know where to send.
            assert_eq!(neg.remote_addr, Some("192.0.2.1:4000".parse().unwrap()));
        }
    }

    #[test]
    fn answer_session_level_direction() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n";
        let (_, neg) = do_answer(text).unwrap();
        assert_eq!(neg.direction, Direction::RecvOnly);
    }

    #[test]
    fn answer_reinvite_hold() {
        let (sdp, neg) = do_answer(HOLD_OFFER).unwrap();
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(sdp.media[0].direction, Some(Direction::RecvOnly));
        assert_eq!(neg.telephone_event_pt, Some(101));
    }

    #[test]
    fn answer_legacy_hold_address() {
        let (sdp, neg) = do_answer(LEGACY_HOLD_OFFER).unwrap();
        assert_eq!(neg.remote_addr, None);
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(sdp.media[0].direction, Some(Direction::RecvOnly));
        // A legacy hold that also says recvonly leaves nothing flowing.
        let text = LEGACY_HOLD_OFFER.to_string() + "a=recvonly\r\n";
        let (_, neg) = do_answer(&text).unwrap();
        assert_eq!(neg.direction, Direction::Inactive);
    }

    #[test]
    fn answer_ptime_rules() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n";
        let ptime = |extra: &str| do_answer(&format!("{base}{extra}")).unwrap().1.ptime_ms;
        assert_eq!(ptime(""), 20);
        assert_eq!(ptime("a=ptime:40\r\n"), 40);
        assert_eq!(ptime("a=ptime:20.0\r\n"), 20);
        // Absurd values fall back to ours rather than sizing buffers.
        assert_eq!(ptime("a=ptime:100000\r\n"), 20);
        let caps = LocalCaps {
            ptime_ms: 30,
            ..LocalCaps::default()
        };
        let (sdp, neg) = answer(&parse(base), &caps, local_ip(), 1, &our_origin()).unwrap();
        assert_eq!(neg.ptime_ms, 30);
        assert_eq!(sdp.media[0].ptime, Some(30));
    }

    #[test]
    fn answer_ipv6() {
        let (sdp, neg) = answer(
            &parse(IPV6_OFFER),
            &LocalCaps::default(),
            "2001:db8::2".parse().unwrap(),
            40000,
            &our_origin(),
        )
        .unwrap();
        assert_eq!(neg.remote_addr, Some("[2001:db8::1]:5004".parse().unwrap()));
        assert_eq!(neg.telephone_event_pt, Some(101));
        assert!(sdp.to_string().contains("c=IN IP6 2001:db8::2\r\n"));
        assert_eq!(sdp.media[0].fmtp(101), Some("0-15"));
    }

    #[test]
    fn answer_errors_map_to_488() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let err = |body: &str| do_answer(&format!("{base}{body}")).unwrap_err();
        assert_eq!(
            err("m=audio 4000 RTP/AVP 18 9 96\r\na=rtpmap:96 opus/48000/2\r\n"),
            NegotiationError::NoCommonCodec
        );
        // A dynamic type without rtpmap means nothing to us.
        assert_eq!(
            err("m=audio 4000 RTP/AVP 97\r\n"),
            NegotiationError::NoCommonCodec
        );
        assert_eq!(
            err("m=video 4000 RTP/AVP 31\r\n"),
            NegotiationError::NoAudio
        );
        assert_eq!(err("m=audio 0 RTP/AVP 0\r\n"), NegotiationError::NoAudio);
        assert_eq!(err(""), NegotiationError::NoAudio);
        assert_eq!(
            err("m=audio 4000 RTP/SAVP 0\r\n"),
            NegotiationError::UnsupportedTransport("RTP/SAVP".into())
        );
        let no_c = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            do_answer(no_c).unwrap_err(),
            NegotiationError::MissingConnection
        );
    }

    #[test]
    fn offer_has_expected_shape() {
        let sdp = offer(
            &LocalCaps::narrowband(),
            local_ip(),
            40000,
            &our_origin(),
            Direction::SendRecv,
        );
        let expected = "v=0\r\n\
o=parley 1000 1 IN IP4 10.0.0.2\r\n\
s=-\r\n\
c=IN IP4 10.0.0.2\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
        assert_eq!(sdp.to_string(), expected);
        assert_eq!(parse(expected), sdp);

        let hold = offer(
            &LocalCaps {
                codecs: vec![Codec::Pcma],
                telephone_event: false,
                ptime_ms: 30,
            },
            local_ip(),
            40000,
            &our_origin(),
            Direction::SendOnly,
        );
        assert_eq!(hold.media[0].formats, vec![8]);
        assert_eq!(hold.media[0].direction, Some(Direction::SendOnly));
        assert_eq!(hold.media[0].ptime, Some(30));
    }

    #[test]
    fn offer_answer_between_two_parley_instances() {
        let caps = LocalCaps::default();
        let our_offer = offer(&caps, local_ip(), 40000, &our_origin(), Direction::SendRecv);
        let peer_ip: IpAddr = "192.0.2.50".parse().unwrap();
        let (their_answer, their_view) = answer(
            &parse(&our_offer.to_string()),
            &caps,
            peer_ip,
            50000,
            &Origin::new(peer_ip, &mut rand::thread_rng()),
        )
        .unwrap();
        let our_view = accept_answer(&our_offer, &parse(&their_answer.to_string())).unwrap();
        assert_eq!(our_view.codec, their_view.codec);
        assert_eq!(our_view.payload_type, their_view.payload_type);
        assert_eq!(our_view.telephone_event_pt, Some(101));
        assert_eq!(
            our_view.remote_addr,
            Some("192.0.2.50:50000".parse().unwrap())
        );
        assert_eq!(
            their_view.remote_addr,
            Some("10.0.0.2:40000".parse().unwrap())
        );
        assert_eq!(our_view.direction, Direction::SendRecv);
    }

    fn answer_to_our_offer(body: &str) -> Result<Negotiated, NegotiationError> {
        let ours = offer(
            &LocalCaps::default(),
            local_ip(),
            40000,
            &our_origin(),
            Direction::SendRecv,
        );
        let text = format!(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n{body}"
        );
        accept_answer(&ours, &parse(&text))
    }

    #[test]
    fn accept_answer_picks_first_answered_codec_we_offered() {
        let neg = answer_to_our_offer(
            "m=audio 6000 RTP/AVP 18 8 0 97\r\na=rtpmap:97 telephone-event/8000\r\na=recvonly\r\n",
        )
        .unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
        // The answerer's own number for events is the one to send with.
        assert_eq!(neg.telephone_event_pt, Some(97));
        assert_eq!(neg.direction, Direction::SendOnly);
        assert_eq!(neg.remote_addr, Some("192.0.2.9:6000".parse().unwrap()));
        assert_eq!(neg.ptime_ms, 20);
    }

    #[test]
    fn accept_answer_narrows_to_our_direction() {
        let ours = offer(
            &LocalCaps::default(),
            local_ip(),
            40000,
            &our_origin(),
            Direction::SendOnly,
        );
        let theirs = parse(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\na=ptime:30\r\n",
        );
        let neg = accept_answer(&ours, &theirs).unwrap();
        assert_eq!(neg.direction, Direction::SendOnly);
        assert_eq!(neg.ptime_ms, 30);
        assert_eq!(neg.telephone_event_pt, None);
    }

    #[test]
    fn accept_answer_errors() {
        assert_eq!(
            answer_to_our_offer("m=audio 0 RTP/AVP 0\r\n").unwrap_err(),
            NegotiationError::AudioRejected
        );
        assert_eq!(
            answer_to_our_offer("m=audio 6000 RTP/AVP 18\r\n").unwrap_err(),
            NegotiationError::NoCommonCodec
        );
        assert_eq!(
            answer_to_our_offer("m=audio 6000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n").unwrap_err(),
            NegotiationError::MediaCountMismatch {
                offered: 1,
                answered: 2
            }
        );
        let hold = answer_to_our_offer("m=audio 6000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n").unwrap();
        assert_eq!(hold.remote_addr, None);
        assert_eq!(hold.direction, Direction::RecvOnly);
    }

    #[test]
    fn origin_new_and_bump() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let mut origin = Origin::new(ip, &mut rng);
        assert_eq!(origin.address_type, "IP6");
        assert_eq!(origin.address, "2001:db8::7");
        assert!(origin.session_id > 0 && origin.session_id < 1 << 62);
        let other = Origin::new(ip, &mut rng);
        assert_ne!(origin.session_id, other.session_id);
        // The same seed gives the same ids: a test can replay a call.
        let mut again = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        assert_eq!(Origin::new(ip, &mut again).session_id, origin.session_id);
        let before = origin.session_version;
        origin.bump_version();
        assert_eq!(origin.session_version, before + 1);
        // A re-INVITE answer built from the bumped origin carries it.
        let (sdp, _) = answer(&parse(HOLD_OFFER), &LocalCaps::default(), ip, 1, &origin).unwrap();
        assert_eq!(sdp.origin.session_version, before + 1);
        assert_eq!(parse(&sdp.to_string()).origin, origin);
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match SessionDescription::parse(text) {
            Err(SdpError::Syntax { line, message }) => (line, message),
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn malformed_sdp_names_the_line() {
        let head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        let (line, msg) = syntax_error(&format!("{head}m=audio abc RTP/AVP 0\r\n"));
        assert_eq!(line, 4);
        assert!(msg.starts_with("bad m= line: port \"abc\""), "{msg}");
        let err = SessionDescription::parse(&format!("{head}m=audio 99999 RTP/AVP 0\r\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 4: bad m= line:"), "{err}");
        let (line, msg) = syntax_error(&format!("{head}t=0 0\r\nm=audio 1 RTP/AVP 0 200\r\n"));
        assert_eq!(line, 5);
        assert!(msg.contains("payload type \"200\""), "{msg}");
        let (line, _) = syntax_error(&format!("{head}m=audio 1\r\n"));
        assert_eq!(line, 4);
        let (line, msg) = syntax_error(&format!("{head}c=IN IP4 example.com\r\n"));
        assert_eq!(line, 4);
        assert!(msg.starts_with("bad c= line"), "{msg}");
        let (line, _) = syntax_error(&format!("{head}c=IN IP6 192.0.2.1\r\n"));
        assert_eq!(line, 4);
        let (line, msg) = syntax_error("o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n");
        assert_eq!(line, 1);
        assert!(msg.contains("v=0"), "{msg}");
        let (line, _) = syntax_error("v=1\r\n");
        assert_eq!(line, 1);
        let (line, msg) = syntax_error("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n");
        assert_eq!(line, 2);
        assert!(msg.starts_with("bad o= line"), "{msg}");
        let (line, _) = syntax_error("v=0\r\no=- 1 1 IN IP4\r\n");
        assert_eq!(line, 2);
        let (line, msg) = syntax_error(&format!(
            "{head}m=audio 1 RTP/AVP 0\r\na=rtpmap:96 opus\r\n"
        ));
        assert_eq!(line, 5);
        assert!(msg.starts_with("bad rtpmap"), "{msg}");
        // The same flaw on a video stream is tolerated: that stream is declined anyway.
        SessionDescription::parse(&format!(
            "{head}m=audio 1 RTP/AVP 0\r\nm=video 2 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
        ))
        .unwrap();
        let (line, msg) = syntax_error(&format!("{head}m=audio 1 RTP/AVP 0\r\na=ptime:fast\r\n"));
        assert_eq!(line, 5);
        assert!(msg.starts_with("bad ptime"), "{msg}");
        let (line, _) = syntax_error(&format!("{head}\r\n\r\nthis is not sdp\r\n"));
        assert_eq!(line, 6, "blank lines still count");
        assert_eq!(
            SessionDescription::parse("v=0\r\ns=-\r\n"),
            Err(SdpError::MissingOrigin)
        );
        assert_eq!(SessionDescription::parse(""), Err(SdpError::Empty));
        assert_eq!(SessionDescription::parse("\r\n \n"), Err(SdpError::Empty));
    }

    #[test]
    fn unknown_lines_and_attributes_are_tolerated() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\ni=info\r\nu=http://x\r\n\
e=a@b\r\np=+1\r\nb=CT:64\r\nt=3034423619 3042462419\r\nr=7d 1h 0 25h\r\nz=0 0\r\n\
k=prompt\r\nX=future\r\nm=audio 1 RTP/AVP 0\r\nb=AS:64\r\ni=media info\r\n\
a=x-custom\r\na=label:1\r\n";
        let sdp = parse(text);
        assert_eq!(sdp.media[0].other.len(), 2);
        assert!(sdp.to_string().contains("t=0 0\r\n"));
    }

    #[test]
    fn long_error_lines_are_truncated() {
        let long = format!(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio {} RTP/AVP 0",
            "9".repeat(5000)
        );
        let msg = SessionDescription::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    /// Whatever the input, parsing must not panic, anything that parses
    /// must serialize to something that parses back identically, and
    /// negotiation must not panic either.
    #[test]
    fn garbage_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5D9);
        let seeds = [
            SOFTPHONE_OFFER,
            CARRIER_OFFER,
            IPV6_OFFER,
            HOLD_OFFER,
            LEGACY_HOLD_OFFER,
        ];
        let alphabet: Vec<char> = "v=0o-sctma:/ \r\n0123456789.INP46RTAVudio/é\u{0}\u{feff}*:,"
            .chars()
            .collect();
        // Counters make sure the loop really exercises the accepting paths
        // and is not just collecting parse errors.
        let parsed = std::cell::Cell::new(0usize);
        let answered = std::cell::Cell::new(0usize);
        let check = |text: &str| {
            if let Ok(sdp) = SessionDescription::parse(text) {
                parsed.set(parsed.get() + 1);
                let again = SessionDescription::parse(&sdp.to_string())
                    .unwrap_or_else(|e| panic!("reparse failed ({e}) for {text:?}"));
                assert_eq!(again, sdp, "round trip differs for {text:?}");
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                if let Ok((reply, _)) = answer(&sdp, &LocalCaps::default(), ip, 1, &our_origin()) {
                    answered.set(answered.get() + 1);
                    assert_eq!(reply.media.len(), sdp.media.len());
                    assert_eq!(SessionDescription::parse(&reply.to_string()), Ok(reply));
                }
                let ours = offer(
                    &LocalCaps::default(),
                    ip,
                    1,
                    &our_origin(),
                    Direction::SendRecv,
                );
                let _ = accept_answer(&ours, &sdp);
                let _ = accept_answer(&sdp, &sdp);
            }
        };
        for seed in seeds {
            // Every prefix (truncated bodies happen with broken framing).
            for (i, _) in seed.char_indices() {
                check(&seed[..i]);
            }
            // Random in-place mutations.
            for _ in 0..400 {
                let mut chars: Vec<char> = seed.chars().collect();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..chars.len());
                    match rng.gen_range(0..3) {
                        0 => chars[at] = alphabet[rng.gen_range(0..alphabet.len())],
                        1 => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                    }
                }
                check(&chars.into_iter().collect::<String>());
            }
        }
        // Pure noise, both from the SDP alphabet and arbitrary bytes.
        for _ in 0..2000 {
            let len = rng.gen_range(0..200);
            let text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            check(&("v=0\no=- 1 1 IN IP4 1.1.1.1\n".to_string() + &text));
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            check(&String::from_utf8_lossy(&bytes));
        }
        assert!(parsed.get() > 800, "only {} inputs parsed", parsed.get());
        assert!(
            answered.get() > 400,
            "only {} inputs answered",
            answered.get()
        );
    }
}
