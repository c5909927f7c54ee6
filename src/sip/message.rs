//! SIP messages: framing, the thin layer that corrects rsip's gaps, and typed access.
//!
//! rsip tokenizes each header line and the Request-URI; this module does what rsip does not
//! (see docs/sip-compliance.md): header folding, compact header names, whitespace before the
//! colon, extension methods and case-sensitive method names, the SIP version check,
//! Content-Length framing, and validation of the headers that steer the protocol.

use std::fmt;

use rsip::headers::UntypedHeader;
use rsip::Header;

use super::headers::{CSeq, HeaderError, NameAddr, Via};

/// A request method. Methods are case-sensitive (RFC 3261 §7.1), and any token is a method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Message,
    Notify,
    Prack,
    Publish,
    Refer,
    Subscribe,
    Update,
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "MESSAGE" => Method::Message,
            "NOTIFY" => Method::Notify,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            "REFER" => Method::Refer,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The canonical name of an rsip header (rsip keeps only the value in typed variants).
fn header_name(h: &Header) -> &str {
    macro_rules! names {
        ($($variant:ident => $name:literal),* $(,)?) => {
            match h {
                Header::Other(name, _) => name,
                $(Header::$variant(_) => $name,)*
            }
        };
    }
    names!(
        Accept => "Accept", AcceptEncoding => "Accept-Encoding",
        AcceptLanguage => "Accept-Language", AlertInfo => "Alert-Info", Allow => "Allow",
        AuthenticationInfo => "Authentication-Info", Authorization => "Authorization",
        CSeq => "CSeq", CallId => "Call-ID", CallInfo => "Call-Info", Contact => "Contact",
        ContentDisposition => "Content-Disposition", ContentEncoding => "Content-Encoding",
        ContentLanguage => "Content-Language", ContentLength => "Content-Length",
        ContentType => "Content-Type", Date => "Date", ErrorInfo => "Error-Info",
        Event => "Event", Expires => "Expires", From => "From", InReplyTo => "In-Reply-To",
        MaxForwards => "Max-Forwards", MimeVersion => "MIME-Version",
        MinExpires => "Min-Expires", Organization => "Organization", Priority => "Priority",
        ProxyAuthenticate => "Proxy-Authenticate", ProxyAuthorization => "Proxy-Authorization",
        ProxyRequire => "Proxy-Require", RecordRoute => "Record-Route", ReplyTo => "Reply-To",
        Require => "Require", RetryAfter => "Retry-After", Route => "Route",
        Server => "Server", Subject => "Subject", SubscriptionState => "Subscription-State",
        Supported => "Supported", Timestamp => "Timestamp", To => "To",
        Unsupported => "Unsupported", UserAgent => "User-Agent", Via => "Via",
        Warning => "Warning", WwwAuthenticate => "WWW-Authenticate",
    )
}

fn header_value(h: &Header) -> &str {
    macro_rules! values {
        ($($variant:ident),* $(,)?) => {
            match h {
                Header::Other(_, value) => value,
                $(Header::$variant(inner) => inner.value(),)*
            }
        };
    }
    values!(
        Accept,
        AcceptEncoding,
        AcceptLanguage,
        AlertInfo,
        Allow,
        AuthenticationInfo,
        Authorization,
        CSeq,
        CallId,
        CallInfo,
        Contact,
        ContentDisposition,
        ContentEncoding,
        ContentLanguage,
        ContentLength,
        ContentType,
        Date,
        ErrorInfo,
        Event,
        Expires,
        From,
        InReplyTo,
        MaxForwards,
        MimeVersion,
        MinExpires,
        Organization,
        Priority,
        ProxyAuthenticate,
        ProxyAuthorization,
        ProxyRequire,
        RecordRoute,
        ReplyTo,
        Require,
        RetryAfter,
        Route,
        Server,
        Subject,
        SubscriptionState,
        Supported,
        Timestamp,
        To,
        Unsupported,
        UserAgent,
        Via,
        Warning,
        WwwAuthenticate,
    )
}

/// Builds an rsip header from a name and value with rsip's own header tokenizer, so that
/// known names land in their typed variants.
pub fn make_header(name: &str, value: &str) -> Header {
    let tokenizer = rsip::headers::header::Tokenizer::from((name.as_bytes(), value.as_bytes()));
    tokenizer
        .try_into()
        .unwrap_or_else(|_| Header::Other(name.to_string(), value.to_string()))
}

/// Compact header forms (RFC 3261 §7.3.3 and the extensions that registered one).
fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        _ => name,
    }
}

/// An ordered header list over rsip's `Headers`, looked up by case-insensitive name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub rsip::Headers);

impl Headers {
    pub fn push(&mut self, name: &str, value: impl AsRef<str>) {
        self.0.push(make_header(name, value.as_ref()));
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| header_name(h).eq_ignore_ascii_case(name))
            .map(header_value)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| header_name(h).eq_ignore_ascii_case(name))
            .map(header_value)
    }

    /// All comma-separated values of every header field with this name, in order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|h| header_name(h).eq_ignore_ascii_case(name))
            .flat_map(|h| super::headers::split_list(header_value(h)))
            .collect()
    }

    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|h| !header_name(h).eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: impl AsRef<str>) {
        self.remove(name);
        self.push(name, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|h| (header_name(h), header_value(h)))
    }

    fn write(&self, out: &mut Vec<u8>) {
        for h in self.0.iter() {
            out.extend_from_slice(header_name(h).as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(header_value(h).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI exactly as received or as we will send it.
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// The headers every request and response must carry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    pub call_id: String,
    pub cseq: CSeq,
    pub from: NameAddr,
    pub to: NameAddr,
    /// Via values, topmost first.
    pub vias: Vec<Via>,
}

impl Core {
    pub fn top_via(&self) -> &Via {
        &self.vias[0]
    }
}

/// Why a message could not be accepted, and what a UAS should answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// 400 for malformed messages; 505 for an unsupported SIP version; 416 for a URI scheme
    /// we do not handle.
    pub status: u16,
    pub reason: String,
    /// What could be read of a request before the failure, so that the error response can
    /// still carry its Via, From, To, Call-ID and CSeq. None when nothing sensible can be
    /// answered (a response, or bytes that are not SIP at all).
    pub partial: Option<Box<Request>>,
}

impl ParseError {
    fn bad(reason: impl Into<String>) -> Self {
        ParseError {
            status: 400,
            reason: reason.into(),
            partial: None,
        }
    }
}

impl From<HeaderError> for ParseError {
    fn from(e: HeaderError) -> Self {
        ParseError::bad(e.to_string())
    }
}

/// Headers that may appear at most once (RFC 3261 §7.3.1: only list headers may repeat).
const SINGLE_VALUED: &[&str] = &[
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
];

/// Where the header block ends: the index of the blank line's end, accepting bare LF
/// line ends too (some stacks send them).
fn header_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) if b < a => Some((b, b + 2)),
        (Some(a), _) => Some((a, a + 4)),
        (None, Some(b)) => Some((b, b + 2)),
        (None, None) => None,
    }
}

/// For stream transports: how many bytes the first complete message in `buf` occupies, or
/// None if more bytes are needed. Leading CRLF keep-alives are counted in. An error means the
/// stream cannot be framed (no or bad Content-Length) and the connection must be closed.
pub fn frame_length(buf: &[u8], max_message: usize) -> Result<Option<usize>, String> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let rest = &buf[skip..];
    let Some((_, body_start)) = header_end(rest) else {
        if rest.len() > max_message {
            return Err(format!("no end of headers within {max_message} bytes"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&rest[..body_start])
        .map_err(|_| "header block is not UTF-8".to_string())?;
    let mut length = None;
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let name = expand_compact(name.trim());
            if name.eq_ignore_ascii_case("Content-Length") {
                let n: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {:?}", value.trim()))?;
                length = Some(n);
            }
        }
    }
    // RFC 3261 §18.3: over a stream, Content-Length is mandatory.
    let length = length.ok_or("stream message without Content-Length")?;
    let total = skip + body_start + length;
    if total > max_message {
        return Err(format!("message of {total} bytes is over the limit"));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Parses one datagram or one framed stream message.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let skip = bytes
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let bytes = &bytes[skip..];
    let (head_end, body_start) =
        header_end(bytes).ok_or_else(|| ParseError::bad("no blank line after the headers"))?;
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| ParseError::bad("header block is not valid UTF-8"))?;
    let mut lines = unfold(head);
    if lines.is_empty() {
        return Err(ParseError::bad("empty message"));
    }
    let start = lines.remove(0);
    let mut headers = Headers::default();
    let mut header_error = None;
    for line in &lines {
        match split_header_line(line) {
            Ok((name, value)) => headers.push(name, value),
            Err(e) => {
                header_error.get_or_insert(e);
            }
        }
    }
    let body_all = &bytes[body_start..];

    if let Some(status_line) = start.strip_prefix("SIP/") {
        let response = parse_status_line(status_line, headers, body_all)?;
        if let Some(e) = header_error {
            return Err(ParseError::bad(e));
        }
        return Ok(Message::Response(response));
    }

    let request = parse_request_line(&start, headers)?;
    let fail = |status: u16, reason: String, request: &Request| ParseError {
        status,
        reason,
        partial: Some(Box::new(request.clone())),
    };
    if let Some(e) = header_error {
        return Err(fail(400, e, &request));
    }
    let body = match take_body(&request.headers, body_all) {
        Ok(b) => b,
        Err(e) => return Err(fail(400, e, &request)),
    };
    let mut request = request;
    request.body = body;
    if let Err(e) = check_request(&request) {
        let status = e.status;
        return Err(fail(status, e.reason, &request));
    }
    Ok(Message::Request(request))
}

/// Joins continuation lines (RFC 3261 §7.3.1 folding) and splits on CRLF or LF.
fn unfold(head: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) && !out.is_empty() {
            let last = out.last_mut().expect("checked non-empty");
            last.push(' ');
            last.push_str(line.trim_start());
        } else {
            out.push(line.to_string());
        }
    }
    out
}

fn split_header_line(line: &str) -> Result<(&str, &str), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.chars().all(super::headers::is_token_char) {
        return Err(format!("bad header name {name:?}"));
    }
    Ok((expand_compact(name), value.trim()))
}

fn parse_status_line(rest: &str, headers: Headers, body: &[u8]) -> Result<Response, ParseError> {
    let (version, rest) = rest
        .split_once(' ')
        .ok_or_else(|| ParseError::bad("bad status line"))?;
    if version != "2.0" {
        return Err(ParseError::bad(format!(
            "unsupported version SIP/{version}"
        )));
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| ParseError::bad(format!("bad status code {code:?}")))?;
    let body = take_body(&headers, body).map_err(ParseError::bad)?;
    Ok(Response {
        code,
        reason: reason.to_string(),
        headers,
        body,
    })
}

fn parse_request_line(line: &str, headers: Headers) -> Result<Request, ParseError> {
    // RFC 3261 §7.1: Method SP Request-URI SP SIP-Version, single spaces, no LWS in the URI.
    let parts: Vec<&str> = line.split(' ').collect();
    let partial = |reason: String, status: u16, method: Method, uri: &str| ParseError {
        status,
        reason,
        partial: Some(Box::new(Request {
            method,
            uri: uri.to_string(),
            headers: headers.clone(),
            body: Vec::new(),
        })),
    };
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(partial(
            format!("bad request line {line:?}"),
            400,
            Method::Other(String::new()),
            "",
        ));
    }
    let (method_token, uri, version) = (parts[0], parts[1], parts[2]);
    if !method_token.chars().all(super::headers::is_token_char) {
        return Err(partial(
            format!("bad method {method_token:?}"),
            400,
            Method::Other(method_token.to_string()),
            uri,
        ));
    }
    let method = Method::parse(method_token);
    if version != "SIP/2.0" {
        let status = if version.starts_with("SIP/") {
            505
        } else {
            400
        };
        return Err(partial(
            format!("unsupported version {version:?}"),
            status,
            method,
            uri,
        ));
    }
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sip") | Some("sips") => {
            rsip::Uri::try_from(uri).map_err(|e| {
                partial(
                    format!("bad Request-URI {uri:?}: {e}"),
                    400,
                    method.clone(),
                    uri,
                )
            })?;
        }
        Some("tel") => {}
        Some(s)
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            return Err(partial(
                format!("unsupported URI scheme {s:?}"),
                416,
                method,
                uri,
            ));
        }
        _ => {
            return Err(partial(
                format!("bad Request-URI {uri:?}"),
                400,
                method,
                uri,
            ))
        }
    }
    Ok(Request {
        method,
        uri: uri.to_string(),
        headers,
        body: Vec::new(),
    })
}

/// Cuts the body to Content-Length (RFC 3261 §18.3); a datagram shorter than its
/// Content-Length is an error, a longer one is truncated.
fn take_body(headers: &Headers, available: &[u8]) -> Result<Vec<u8>, String> {
    let mut lengths = headers.all("Content-Length");
    let Some(first) = lengths.next() else {
        return Ok(available.to_vec());
    };
    if lengths.next().is_some() {
        return Err("more than one Content-Length".into());
    }
    let n: usize = first
        .trim()
        .parse()
        .map_err(|_| format!("bad Content-Length {first:?}"))?;
    if n > available.len() {
        return Err(format!(
            "Content-Length {n} is larger than the {} body bytes received",
            available.len()
        ));
    }
    Ok(available[..n].to_vec())
}

fn check_request(req: &Request) -> Result<(), ParseError> {
    for name in SINGLE_VALUED {
        if req.headers.all(name).count() > 1 {
            return Err(ParseError::bad(format!("more than one {name} header")));
        }
    }
    let core = core_of(&req.headers)?;
    if core.cseq.method != req.method.as_str() {
        return Err(ParseError::bad(format!(
            "CSeq method {} does not match request method {}",
            core.cseq.method, req.method
        )));
    }
    if let Some(mf) = req.headers.get("Max-Forwards") {
        mf.trim()
            .parse::<u8>()
            .map_err(|_| ParseError::bad(format!("bad Max-Forwards {mf:?}")))?;
    }
    for contact in req.headers.list("Contact") {
        if contact != "*" {
            NameAddr::parse(contact, "Contact")?;
        }
    }
    if let Some(exp) = req.headers.get("Expires") {
        // Values above 2^32-1 are allowed by RFC 3261 and must be treated as the maximum.
        if exp.trim().is_empty() || !exp.trim().chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::bad(format!("bad Expires {exp:?}")));
        }
    }
    if let Some(date) = req.headers.get("Date") {
        check_date(date)?;
    }
    if !req.body.is_empty() && req.headers.get("Content-Type").is_none() {
        return Err(ParseError::bad("body without Content-Type"));
    }
    Ok(())
}

/// RFC 3261 §20.17: Date is an RFC 1123 date, always in GMT.
fn check_date(value: &str) -> Result<(), ParseError> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bad = || {
        ParseError::bad(format!(
            "bad Date {value:?}: expected e.g. \"Sat, 13 Nov 2010 23:29:00 GMT\""
        ))
    };
    let (day, rest) = value.trim().split_once(',').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [dd, mon, year, time, zone] = parts[..] else {
        return Err(bad());
    };
    let time_ok = time.len() == 8
        && time
            .split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit()));
    if !DAYS.contains(&day.trim())
        || dd.len() != 2
        || !dd.chars().all(|c| c.is_ascii_digit())
        || !MONTHS.contains(&mon)
        || year.len() != 4
        || !year.chars().all(|c| c.is_ascii_digit())
        || !time_ok
        || zone != "GMT"
    {
        return Err(bad());
    }
    Ok(())
}

/// Parses the headers every message must have.
pub fn core_of(headers: &Headers) -> Result<Core, ParseError> {
    let need = |name: &'static str| {
        headers
            .get(name)
            .ok_or_else(|| ParseError::bad(format!("missing {name} header")))
    };
    let call_id = need("Call-ID")?.trim();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::bad("bad Call-ID"));
    }
    let cseq = CSeq::parse(need("CSeq")?)?;
    let from = NameAddr::parse(need("From")?, "From")?;
    let to = NameAddr::parse(need("To")?, "To")?;
    let vias = headers
        .list("Via")
        .into_iter()
        .map(Via::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if vias.is_empty() {
        return Err(ParseError::bad("missing Via header"));
    }
    Ok(Core {
        call_id: call_id.to_string(),
        cseq,
        from,
        to,
        vias,
    })
}

impl Request {
    pub fn core(&self) -> Result<Core, ParseError> {
        core_of(&self.headers)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.headers.write(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

impl Response {
    pub fn core(&self) -> Result<Core, ParseError> {
        core_of(&self.headers)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.code, self.reason).as_bytes());
        self.headers.write(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// A response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied, the
    /// To tag added when the request had none and this is not a 100.
    pub fn to(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::default();
        for via in req.headers.all("Via") {
            headers.push("Via", via);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.get(name) {
                let mut value = v.to_string();
                if name == "To" && code != 100 {
                    if let (Some(tag), Ok(to)) = (to_tag, NameAddr::parse(v, "To")) {
                        if to.tag().is_none() {
                            value = to.with_tag(tag).to_string();
                        }
                    }
                }
                headers.push(name, value);
            }
        }
        Response {
            code,
            reason: reason_phrase(code).to_string(),
            headers,
            body: Vec::new(),
        }
    }

    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Response {
        self.headers.set("Content-Type", content_type);
        self.body = body;
        self
    }

    /// Sets Content-Length from the body; call last.
    pub fn finish(mut self) -> Response {
        self.headers
            .set("Content-Length", self.body.len().to_string());
        self
    }
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.example.com>\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_a_plain_invite_and_answers_it() {
        let Message::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(req.body, b"v=0\n");
        let core = req.core().unwrap();
        assert_eq!(core.cseq.seq, 314159);
        assert_eq!(core.top_via().branch(), Some("z9hG4bK776asdhds"));
        let resp = Response::to(&req, 200, Some("xyz")).finish();
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(
            text.contains("To: Bob <sip:bob@biloxi.example.com>;tag=xyz\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 0\r\n\r\n"), "{text}");
        // And what we write, we read back.
        let Message::Response(back) = parse(&resp.to_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(back.code, 200);
        assert_eq!(back.core().unwrap().to.tag(), Some("xyz"));
    }

    #[test]
    fn folding_compact_names_and_space_before_colon() {
        let msg = "OPTIONS sip:x@y SIP/2.0\r\nv : SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            f: <sip:a@b>;tag=1\r\nt: <sip:x@y>\r\ni: abc\r\nCSeq:\r\n 8 OPTIONS\r\nl: 0\r\n\r\n";
        let Message::Request(req) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
        let core = req.core().unwrap();
        assert_eq!(core.call_id, "abc");
        assert_eq!(core.cseq.seq, 8);
    }

    #[test]
    fn errors_carry_the_status_and_the_partial_request() {
        let e = parse(
            INVITE
                .replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.status, 505);
        assert!(e.partial.is_some());
        let e = parse(INVITE.replace("314159 INVITE", "314159 BYE").as_bytes()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reason.contains("CSeq"), "{}", e.reason);
        let e = parse(INVITE.replace("Length: 4", "Length: 9999").as_bytes()).unwrap_err();
        assert!(e.reason.contains("Content-Length"), "{}", e.reason);
        let e = parse(
            INVITE
                .replace("sip:bob@biloxi", "foo:bob@biloxi")
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.status, 416);
        let e = parse(b"garbage").unwrap_err();
        assert!(e.partial.is_none());
    }

    #[test]
    fn extension_methods_are_case_sensitive_tokens() {
        let msg = INVITE.replace("INVITE", "NEWMETHOD");
        let Message::Request(req) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(req.method, Method::Other("NEWMETHOD".into()));
        assert_eq!(Method::parse("invite"), Method::Other("invite".into()));
    }

    #[test]
    fn stream_framing() {
        let msg = INVITE.as_bytes();
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(msg);
        assert_eq!(frame_length(&buf[..buf.len() - 1], 65536), Ok(None));
        assert_eq!(frame_length(&buf, 65536), Ok(Some(buf.len())));
        buf.extend_from_slice(b"OPTIONS");
        assert_eq!(frame_length(&buf, 65536), Ok(Some(buf.len() - 7)));
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        assert!(frame_length(no_cl.as_bytes(), 65536).is_err());
        assert!(frame_length(&[b'x'; 100], 50).is_err());
    }
}
