//! Small, strict parsers for the header values the transaction and dialog layers depend on:
//! Via, name-addr (From/To/Contact/Route), CSeq and SIP URIs.
//!
//! rsip keeps header values as strings; these parsers turn the few that steer protocol
//! behaviour into typed values, and reject what RFC 3261's grammar rejects, so that a
//! malformed message gets a 400 naming the header instead of misrouting a response.

use std::fmt;

/// A header-value problem, phrased for a SIP Warning header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {reason}")]
pub struct HeaderError {
    pub header: &'static str,
    pub reason: String,
}

fn err(header: &'static str, reason: impl Into<String>) -> HeaderError {
    HeaderError {
        header,
        reason: reason.into(),
    }
}

/// Splits a header value on top-level commas: commas inside quoted strings and `<…>` do
/// not separate values (RFC 3261 §7.3.1).
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes, mut in_angle, mut escaped) = (0, false, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = value[start..].trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// RFC 3261 token characters.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// `;name=value;flag` parameters, in order, names lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses the text after the first `;` (the leading `;` already removed).
    fn parse(text: &str, header: &'static str) -> Result<Params, HeaderError> {
        let mut out = Vec::new();
        if text.trim().is_empty() {
            return Ok(Params(out));
        }
        for part in split_outside_quotes(text, ';') {
            let part = part.trim();
            if part.is_empty() {
                return Err(err(header, "empty parameter"));
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part, None),
            };
            if !is_token(name) {
                return Err(err(header, format!("bad parameter name {name:?}")));
            }
            if let Some(v) = value {
                let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
                if v.is_empty()
                    || !(quoted || v.chars().all(|c| is_token_char(c) || "[]:".contains(c)))
                {
                    return Err(err(header, format!("bad value for parameter {name}")));
                }
            }
            out.push((name.to_ascii_lowercase(), value.map(str::to_string)));
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// `host[:port]` with IPv6 references in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    pub fn parse(text: &str, header: &'static str) -> Result<HostPort, HeaderError> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| err(header, "unterminated IPv6 reference"))?;
            let host = &rest[..end];
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| err(header, format!("bad IPv6 address {host:?}")))?;
            let after = &rest[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(err(header, format!("junk after host: {after:?}"))),
            };
            (format!("[{host}]"), port)
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (text.to_string(), None),
            }
        };
        if host.is_empty()
            || !(host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(err(header, format!("bad host {host:?}")));
        }
        let port = match port {
            Some(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err(header, format!("bad port {p:?}")))?,
            ),
            None => None,
        };
        Ok(HostPort { host, port })
    }

    /// The host without IPv6 brackets, for address parsing.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// One Via header field value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased transport token: UDP, TCP, TLS, WS, …
    pub transport: String,
    pub sent_by: HostPort,
    pub params: Params,
}

/// RFC 3261 §8.1.1.7: branches starting with this cookie are globally unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        const H: &str = "Via";
        let value = value.trim();
        // sent-protocol = name SLASH version SLASH transport, with optional LWS around slashes.
        let mut fields = value.splitn(3, '/');
        let (Some(name), Some(version), Some(tail)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(err(H, "missing sent-protocol"));
        };
        let tail = tail.trim_start();
        let split = tail
            .find([' ', '\t'])
            .ok_or_else(|| err(H, "missing sent-by"))?;
        let (transport, rest) = tail.split_at(split);
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(err(H, format!("bad sent-protocol {name}/{version}")));
        }
        if !is_token(transport) {
            return Err(err(H, format!("bad transport {transport:?}")));
        }
        let transport = transport.to_ascii_uppercase();
        let rest = rest.trim();
        let (sent_by, params) = match rest.split_once(';') {
            Some((s, p)) => (s, Params::parse(p, H)?),
            None => (rest, Params::default()),
        };
        let sent_by = HostPort::parse(sent_by, H)?;
        if let Some(Some(rport)) = params.get("rport") {
            rport
                .parse::<u16>()
                .map_err(|_| err(H, format!("bad rport {rport:?}")))?;
        }
        Ok(Via {
            transport,
            sent_by,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// True when the branch is RFC 3261-style and can key a transaction on its own.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport, self.sent_by, self.params
        )
    }
}

/// A SIP or SIPS URI, just enough to route: scheme, user, host, port and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub host_port: HostPort,
    pub params: Params,
}

impl SipUri {
    pub fn parse(text: &str) -> Result<SipUri, HeaderError> {
        const H: &str = "URI";
        let text = text.trim();
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| err(H, format!("no scheme in {text:?}")))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(err(H, format!("unsupported scheme {scheme:?}")));
        }
        // Headers (`?…`) are irrelevant to routing.
        let rest = rest.split('?').next().unwrap_or_default();
        let (user, host_part) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, params) = match host_part.split_once(';') {
            Some((h, p)) => (h, Params::parse(p, H)?),
            None => (host_part, Params::default()),
        };
        Ok(SipUri {
            scheme,
            user,
            host_port: HostPort::parse(host, H)?,
            params,
        })
    }

    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Default port for the scheme (RFC 3263 without DNS).
    pub fn port_or_default(&self) -> u16 {
        self.host_port
            .port
            .unwrap_or(if self.scheme == "sips" { 5061 } else { 5060 })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}{}", self.host_port, self.params)
    }
}

/// `"Display" <uri>;params` or `uri;params` (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str, header: &'static str) -> Result<NameAddr, HeaderError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(err(header, "empty value"));
        }
        let (display, uri, params_text) = if let Some(lt) = find_unquoted(value, '<') {
            let display = value[..lt].trim();
            if display.starts_with('"') {
                if !(display.len() >= 2 && display.ends_with('"')) {
                    return Err(err(header, "unbalanced quotes in display name"));
                }
            } else if !display
                .chars()
                .all(|c| is_token_char(c) || c == ' ' || c == '\t')
            {
                // RFC 3261 §25.1: an unquoted display name is tokens and whitespace only.
                return Err(err(
                    header,
                    format!("display name {display:?} must be quoted"),
                ));
            }
            let rest = &value[lt + 1..];
            let gt = rest
                .find('>')
                .ok_or_else(|| err(header, "missing '>' after URI"))?;
            let uri = &rest[..gt];
            if uri.contains(char::is_whitespace) {
                return Err(err(header, format!("whitespace inside <{uri}>")));
            }
            let after = rest[gt + 1..].trim();
            let params = match after.strip_prefix(';') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return Err(err(header, format!("junk after '>': {after:?}"))),
            };
            let display = (!display.is_empty()).then(|| display.to_string());
            (display, uri, params)
        } else {
            // addr-spec form: parameters after the URI belong to the header, not the URI, and
            // a URI with a comma, question mark or semicolon must be in <> (RFC 3261 §20).
            let (uri, params) = match value.split_once(';') {
                Some((u, p)) => (u.trim(), p),
                None => (value, ""),
            };
            if uri.contains(['"', '>', ' ', '\t', '?', ',']) {
                return Err(err(
                    header,
                    format!("URI {uri:?} must be enclosed in <> (or is malformed)"),
                ));
            }
            (None, uri, params)
        };
        if uri.is_empty() || !uri.contains(':') {
            return Err(err(header, format!("bad URI {uri:?}")));
        }
        Ok(NameAddr {
            display,
            uri: uri.to_string(),
            params: Params::parse(params_text, header)?,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn with_tag(&self, tag: &str) -> NameAddr {
        let mut out = self.clone();
        out.params.0.retain(|(n, _)| n != "tag");
        out.params.0.push(("tag".into(), Some(tag.to_string())));
        out
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

fn find_unquoted(text: &str, needle: char) -> Option<usize> {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == needle && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// CSeq: sequence number and method (RFC 3261 §20.16: the number is below 2**31).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: String,
}

impl CSeq {
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        const H: &str = "CSeq";
        let mut parts = value.split_whitespace();
        let (Some(num), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(
                H,
                format!("expected \"<number> <method>\", got {value:?}"),
            ));
        };
        let seq = num
            .parse::<u32>()
            .ok()
            .filter(|n| *n < (1 << 31))
            .ok_or_else(|| err(H, format!("sequence number {num:?} is not below 2^31")))?;
        if !is_token(method) {
            return Err(err(H, format!("bad method {method:?}")));
        }
        Ok(CSeq {
            seq,
            method: method.to_string(),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_rport_received_and_ipv6() {
        let v = Via::parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport;received=1.2.3.4")
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert_eq!(v.params.get("rport"), Some(None));
        assert!(v.has_rfc3261_branch());
        let v = Via::parse("SIP / 2.0 / TCP [2001:db8::9]:5061 ;branch=z9hG4bKx").unwrap();
        assert_eq!(v.sent_by.bare_host(), "2001:db8::9");
        assert_eq!(v.transport, "TCP");
        for bad in [
            "SIP/2.0/UDP",
            "SIP/3.0/UDP host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host:5060;;branch=1",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            "\"Alice, A.\" <sip:alice@atlanta.com;transport=tcp>;tag=1928",
            "From",
        )
        .unwrap();
        assert_eq!(n.uri, "sip:alice@atlanta.com;transport=tcp");
        assert_eq!(n.tag(), Some("1928"));
        let n = NameAddr::parse("sip:bob@biloxi.com;tag=a6c85cf", "To").unwrap();
        assert_eq!(n.uri, "sip:bob@biloxi.com");
        assert_eq!(n.tag(), Some("a6c85cf"));
        assert_eq!(n.with_tag("x").to_string(), "<sip:bob@biloxi.com>;tag=x");
        assert!(NameAddr::parse("\"unterminated <sip:a@b>", "To").is_err());
        assert!(NameAddr::parse("<sip:a@b", "To").is_err());
        assert!(NameAddr::parse("Bob sip:a@b", "To").is_err());
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("314159 INVITE").unwrap().seq, 314159);
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
    }

    #[test]
    fn list_splitting_respects_quotes_and_angles() {
        assert_eq!(
            split_list("\"a,b\" <sip:x@y;p=1,2>, <sip:z@w>"),
            vec!["\"a,b\" <sip:x@y;p=1,2>", "<sip:z@w>"]
        );
        assert_eq!(split_list("INVITE, ACK ,BYE"), vec!["INVITE", "ACK", "BYE"]);
    }

    #[test]
    fn uri_routing_fields() {
        let u = SipUri::parse("sip:+15551234@carrier.example:5080;transport=tcp").unwrap();
        assert_eq!(u.user.as_deref(), Some("+15551234"));
        assert_eq!(u.port_or_default(), 5080);
        assert_eq!(u.transport(), Some("tcp"));
        assert_eq!(SipUri::parse("sips:x@h").unwrap().port_or_default(), 5061);
        assert!(SipUri::parse("tel:+1555").is_err());
    }
}
