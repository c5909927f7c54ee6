//! SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), client
//! side, plus a verifier for tests and a future registrar.
//!
//! Only `qop=auth` and the RFC 2069-compatible no-qop form are implemented.
//! `auth-int` would need the message body hashed into every request, which
//! SIP servers practically never demand; when a server offers nothing else
//! we fail clearly instead of sending a response that cannot verify.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a challenge or credentials could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The header uses another scheme (e.g. `Basic`, forbidden by RFC 3261
    /// §22.1), so we have nothing to answer it with.
    #[error("authentication scheme {0:?} is not Digest")]
    NotDigest(String),
    /// A parameter the computation depends on is absent.
    #[error("missing {0} parameter")]
    MissingParam(&'static str),
    /// The header value does not follow the auth-param grammar.
    #[error("malformed digest header: {0}")]
    Malformed(String),
    /// The algorithm is not one we implement (e.g. SHA-512-256).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The server only accepts qop values we do not implement.
    #[error("unsupported qop {0:?}: only \"auth\" is implemented")]
    UnsupportedQop(String),
    /// A cnonce is required (qop or a `-sess` algorithm) but was empty.
    #[error("a non-empty cnonce is required for this challenge")]
    MissingCnonce,
    /// A value would put control characters (e.g. CR/LF) into a SIP header,
    /// which could inject header lines.
    #[error("{0} contains characters not allowed in a SIP header")]
    InvalidValue(&'static str),
}

/// Digest hash algorithms (RFC 7616 §3.3; SHA-256 for SIP per RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// The default when a challenge names none (RFC 3261 §22.4).
    #[default]
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether HA1 is re-keyed with the nonces (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Whether the underlying hash is SHA-256, which RFC 8760 §2.4 tells
    /// clients to prefer over MD5.
    pub fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    /// Hex digest of `data` with this algorithm's hash function.
    fn hash(self, data: &str) -> String {
        if self.is_sha256() {
            hex::encode(Sha256::digest(data.as_bytes()))
        } else {
            hex::encode(Md5::digest(data.as_bytes()))
        }
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    /// Case-insensitive, since RFC 7616 tokens are and servers vary.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(s.to_string()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// Must be echoed back verbatim when present (RFC 7616 §3.3).
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Offered qop values, lower-cased; empty means RFC 2069 mode.
    pub qop: Vec<String>,
    /// The previous nonce expired but the credentials were right: retry
    /// with the new nonce instead of treating it as a wrong password.
    pub stale: bool,
}

/// The user's secret for one realm.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Keeps passwords out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The parameters of an `Authorization` / `Proxy-Authorization` digest
/// response. `Display` renders the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Lower-case hex digest.
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    /// `auth` or absent (RFC 2069 mode).
    pub qop: Option<String>,
    /// Nonce count as sent: eight hex digits. Kept as text because the
    /// digest covers the literal characters.
    pub nc: Option<String>,
    pub opaque: Option<String>,
}

impl DigestResponse {
    /// Answers `challenge` for a request with `method` and Request-URI
    /// `uri`. `nonce_count` counts requests made with this nonce (starting
    /// at 1); `cnonce` should come from [`new_cnonce`].
    pub fn compute(
        challenge: &Challenge,
        creds: &Credentials,
        method: &str,
        uri: &str,
        nonce_count: u32,
        cnonce: &str,
    ) -> Result<Self, AuthError> {
        let qop = select_qop(&challenge.qop)?;
        // RFC 2617 forbids a cnonce without qop, but a -sess HA1 cannot be
        // computed without one, so it is sent whenever either needs it.
        let needs_cnonce = qop.is_some() || challenge.algorithm.is_session();
        let cnonce = needs_cnonce.then(|| cnonce.to_string());
        let nc = qop.map(|_| format!("{nonce_count:08x}"));
        for (name, value) in [
            ("username", creds.username.as_str()),
            ("realm", &challenge.realm),
            ("nonce", &challenge.nonce),
            ("uri", uri),
            ("cnonce", cnonce.as_deref().unwrap_or("")),
            ("opaque", challenge.opaque.as_deref().unwrap_or("")),
        ] {
            if value.chars().any(char::is_control) {
                return Err(AuthError::InvalidValue(name));
            }
        }
        if method.is_empty() || !method.chars().all(is_token_char) {
            return Err(AuthError::InvalidValue("method"));
        }
        let mut out = DigestResponse {
            username: creds.username.clone(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_string(),
            response: String::new(),
            algorithm: challenge.algorithm,
            cnonce,
            qop: qop.map(str::to_string),
            nc,
            opaque: challenge.opaque.clone(),
        };
        out.response = out.expected_response(&creds.password, method)?;
        Ok(out)
    }

    /// Parses an `Authorization` / `Proxy-Authorization` header value.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = parse_digest_params(value)?;
        let get = |name: &str| lookup(&params, name).map(str::to_string);
        let require = |name: &'static str| get(name).ok_or(AuthError::MissingParam(name));
        let nc = get("nc");
        if let Some(nc) = &nc {
            if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AuthError::Malformed(format!(
                    "nc {nc:?} is not eight hex digits"
                )));
            }
        }
        Ok(DigestResponse {
            username: require("username")?,
            realm: require("realm")?,
            nonce: require("nonce")?,
            uri: require("uri")?,
            response: require("response")?,
            algorithm: match lookup(&params, "algorithm") {
                Some(a) => a.parse()?,
                None => Algorithm::default(),
            },
            cnonce: get("cnonce"),
            qop: get("qop"),
            nc,
            opaque: get("opaque"),
        })
    }

    /// Recomputes what `response` should be for `password` and `method`,
    /// from the other fields (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).
    pub fn expected_response(&self, password: &str, method: &str) -> Result<String, AuthError> {
        let alg = self.algorithm;
        let cnonce = self.cnonce.as_deref().filter(|c| !c.is_empty());
        let mut ha1 = alg.hash(&format!("{}:{}:{}", self.username, self.realm, password));
        if alg.is_session() {
            let cnonce = cnonce.ok_or(AuthError::MissingCnonce)?;
            ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hash(&format!("{method}:{}", self.uri));
        match self.qop.as_deref() {
            None => Ok(alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))),
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let cnonce = cnonce.ok_or(AuthError::MissingCnonce)?;
                let nc = self.nc.as_deref().ok_or(AuthError::MissingParam("nc"))?;
                Ok(alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce)))
            }
            Some(other) => Err(AuthError::UnsupportedQop(other.to_string())),
        }
    }
}

impl fmt::Display for DigestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quoted(&self.username),
            quoted(&self.realm),
            quoted(&self.nonce),
            quoted(&self.uri),
            quoted(&self.response),
            self.algorithm
        )?;
        if let Some(cnonce) = &self.cnonce {
            write!(f, ", cnonce={}", quoted(cnonce))?;
        }
        // qop and nc are unquoted tokens (RFC 3261 §25.1, message-qop).
        if let Some(qop) = &self.qop {
            write!(f, ", qop={qop}")?;
        }
        if let Some(nc) = &self.nc {
            write!(f, ", nc={nc}")?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quoted(opaque))?;
        }
        Ok(())
    }
}

/// Parses a `WWW-Authenticate` / `Proxy-Authenticate` header value.
pub fn parse_challenge(value: &str) -> Result<Challenge, AuthError> {
    let params = parse_digest_params(value)?;
    let algorithm = match lookup(&params, "algorithm") {
        Some(a) => a.parse()?,
        None => Algorithm::default(),
    };
    let qop = lookup(&params, "qop")
        .map(|q| {
            q.split(',')
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Challenge {
        realm: lookup(&params, "realm")
            .ok_or(AuthError::MissingParam("realm"))?
            .to_string(),
        nonce: lookup(&params, "nonce")
            .ok_or(AuthError::MissingParam("nonce"))?
            .to_string(),
        opaque: lookup(&params, "opaque").map(str::to_string),
        algorithm,
        qop,
        stale: lookup(&params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// Picks the challenge to answer when a 401/407 carries several (RFC 8760
/// §2.4: a server offers SHA-256 and MD5 so old clients keep working; new
/// clients should take the strongest). Challenges we cannot parse or
/// answer (unknown algorithm, auth-int only) lose to any we can; among
/// equals the first wins, respecting the server's order.
pub fn best_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut best: Option<(u8, Challenge)> = None;
    for value in values {
        let Ok(challenge) = parse_challenge(value) else {
            continue;
        };
        let answerable = select_qop(&challenge.qop).is_ok();
        let rank = u8::from(answerable) * 2 + u8::from(challenge.algorithm.is_sha256());
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, challenge));
        }
    }
    best.map(|(_, c)| c)
}

/// Builds the `Authorization` / `Proxy-Authorization` header value that
/// answers `challenge`.
pub fn authorize(
    challenge: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    nonce_count: u32,
    cnonce: &str,
) -> Result<String, AuthError> {
    if (!challenge.qop.is_empty() || challenge.algorithm.is_session()) && cnonce.is_empty() {
        return Err(AuthError::MissingCnonce);
    }
    DigestResponse::compute(challenge, creds, method, uri, nonce_count, cnonce)
        .map(|r| r.to_string())
}

/// A fresh client nonce: 128 random bits in hex, enough that a server
/// cannot predict it (which is the point of the cnonce, RFC 7616 §5.11).
pub fn new_cnonce(rng: &mut impl Rng) -> String {
    hex::encode(rng.gen::<[u8; 16]>())
}

/// Checks an `Authorization` header value against `password` for a request
/// with `method`. Only the digest is checked: nonce freshness, realm and
/// Request-URI matching are the caller's job.
pub fn verify(authorization_value: &str, password: &str, method: &str) -> Result<bool, AuthError> {
    let response = DigestResponse::parse(authorization_value)?;
    let expected = response.expected_response(password, method)?;
    Ok(constant_time_eq(
        expected.as_bytes(),
        response.response.to_ascii_lowercase().as_bytes(),
    ))
}

/// The qop we will answer with: `auth` if offered, nothing if the server
/// offered none (RFC 2069 mode), an error if only others were offered.
fn select_qop(offered: &[String]) -> Result<Option<&'static str>, AuthError> {
    if offered.is_empty() {
        Ok(None)
    } else if offered.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
        Ok(Some("auth"))
    } else {
        Err(AuthError::UnsupportedQop(offered.join(",")))
    }
}

/// Compares without an early exit so response timing does not reveal how
/// many leading characters of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Renders a quoted-string, escaping `"` and `\` (RFC 3261 §25.1).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// The first value of `name` (already lower-case); later duplicates are
/// ignored rather than rejected.
fn lookup<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Checks the `Digest` scheme and parses the comma-separated auth-params
/// after it into lower-cased names and unescaped values.
fn parse_digest_params(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim();
    let (scheme, rest) = match value.find(|c: char| c.is_whitespace()) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest(scheme.chars().take(40).collect()));
    }
    parse_params(rest)
}

/// A small scanner for `name = token | quoted-string` lists. Whitespace
/// around `=` and `,` and empty list elements are tolerated because real
/// servers produce them; unquoted values are accepted up to the next comma
/// or space even when they contain non-token characters (e.g. base64
/// nonces sent unquoted).
fn parse_params(input: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        while chars
            .next_if(|&(_, c)| c == ',' || c.is_whitespace())
            .is_some()
        {}
        let Some(&(start, first)) = chars.peek() else {
            break;
        };
        let mut name = String::new();
        while let Some((_, c)) = chars.next_if(|&(_, c)| is_token_char(c)) {
            name.push(c);
        }
        if name.is_empty() {
            return Err(AuthError::Malformed(format!(
                "unexpected {first:?} at byte {start}"
            )));
        }
        skip_ws(&mut chars);
        if chars.next_if(|&(_, c)| c == '=').is_none() {
            return Err(AuthError::Malformed(format!("expected '=' after {name:?}")));
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.next_if(|&(_, c)| c == '"').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(AuthError::Malformed(format!(
                            "unterminated quoted value for {name:?}"
                        )))
                    }
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) if !c.is_control() => value.push(c),
                        _ => {
                            return Err(AuthError::Malformed(format!(
                                "bad escape in value for {name:?}"
                            )))
                        }
                    },
                    Some((_, c)) if c.is_control() && c != '\t' => {
                        return Err(AuthError::Malformed(format!(
                            "control character in value for {name:?}"
                        )))
                    }
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars
                .next_if(|&(_, c)| c != ',' && c != '"' && !c.is_whitespace() && !c.is_control())
            {
                value.push(c);
            }
            if value.is_empty() {
                return Err(AuthError::Malformed(format!("missing value for {name:?}")));
            }
        }
        skip_ws(&mut chars);
        if let Some(&(at, c)) = chars.peek() {
            if c != ',' {
                return Err(AuthError::Malformed(format!(
                    "expected ',' after {name:?}, found {c:?} at byte {at}"
                )));
            }
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    // RFC 7616 §3.9.1.
    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

    fn rfc7616_challenge(algorithm: &str) -> Challenge {
        parse_challenge(&format!(
            "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    \
             algorithm={algorithm},\r\n    nonce=\"{RFC7616_NONCE}\",\r\n    opaque=\"{RFC7616_OPAQUE}\""
        ))
        .unwrap()
    }

    fn mufasa(password: &str) -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            password: password.into(),
        }
    }

    fn rfc7616_authorize(algorithm: &str) -> String {
        authorize(
            &rfc7616_challenge(algorithm),
            &mufasa("Circle of Life"),
            "GET",
            "/dir/index.html",
            1,
            RFC7616_CNONCE,
        )
        .unwrap()
    }

    #[test]
    fn rfc7616_md5_example() {
        let value = rfc7616_authorize("MD5");
        let expected = format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             nonce=\"{RFC7616_NONCE}\", uri=\"/dir/index.html\", \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5, \
             cnonce=\"{RFC7616_CNONCE}\", qop=auth, nc=00000001, opaque=\"{RFC7616_OPAQUE}\""
        );
        assert_eq!(value, expected);
        assert_eq!(verify(&value, "Circle of Life", "GET"), Ok(true));
    }

    #[test]
    fn rfc7616_sha256_example() {
        let value = rfc7616_authorize("SHA-256");
        let parsed = DigestResponse::parse(&value).unwrap();
        assert_eq!(
            parsed.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(parsed.algorithm, Algorithm::Sha256);
        assert!(value.contains(", algorithm=SHA-256, "));
        assert_eq!(verify(&value, "Circle of Life", "GET"), Ok(true));
    }

    /// The -sess vectors were computed independently (Python hashlib) from
    /// the RFC 7616 §3.4.2 formula, as the RFC gives no example for them.
    #[test]
    fn sess_variants() {
        for (alg, expected) in [
            ("MD5-sess", "e783283f46242139c486a698fec7211d"),
            (
                "SHA-256-sess",
                "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7",
            ),
        ] {
            let value = rfc7616_authorize(alg);
            let parsed = DigestResponse::parse(&value).unwrap();
            assert_eq!(parsed.response, expected, "{alg}");
            assert!(value.contains(&format!("algorithm={alg}")));
            assert_eq!(verify(&value, "Circle of Life", "GET"), Ok(true));
        }
    }

    #[test]
    fn rfc2617_with_qop() {
        let challenge = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let value = authorize(
            &challenge,
            &mufasa("Circle Of Life"),
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        )
        .unwrap();
        assert!(value.contains("response=\"6629fae49393a05397450978507c4ef1\""));
    }

    #[test]
    fn rfc2069_style_without_qop() {
        let challenge = parse_challenge(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        )
        .unwrap();
        assert!(challenge.qop.is_empty());
        assert_eq!(challenge.algorithm, Algorithm::Md5);
        let value = authorize(
            &challenge,
            &mufasa("Circle Of Life"),
            "GET",
            "/dir/index.html",
            7,
            "ignored",
        )
        .unwrap();
        assert_eq!(
            value,
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"670fd8c2df070c60b045671b8b24ff02\", algorithm=MD5"
        );
        assert_eq!(verify(&value, "Circle Of Life", "GET"), Ok(true));
    }

    #[test]
    fn sip_register_round_trip() {
        let challenge = parse_challenge(
            "Digest realm=\"atlanta.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"",
        )
        .unwrap();
        let creds = Credentials {
            username: "alice".into(),
            password: "secret".into(),
        };
        let cnonce = new_cnonce(&mut rand::thread_rng());
        let value = authorize(
            &challenge,
            &creds,
            "REGISTER",
            "sip:atlanta.com",
            2,
            &cnonce,
        )
        .unwrap();
        assert!(value.contains("nc=00000002"));
        assert!(value.contains(&format!("cnonce=\"{cnonce}\"")));
        assert!(!value.contains("opaque"));
        assert_eq!(verify(&value, "secret", "REGISTER"), Ok(true));
        assert_eq!(verify(&value, "Secret", "REGISTER"), Ok(false));
        assert_eq!(verify(&value, "secret", "INVITE"), Ok(false));
        let tampered = value.replace("sip:atlanta.com", "sip:evil.com");
        assert_eq!(verify(&tampered, "secret", "REGISTER"), Ok(false));
        let bumped = value.replace("nc=00000002", "nc=00000003");
        assert_eq!(verify(&bumped, "secret", "REGISTER"), Ok(false));
    }

    #[test]
    fn wrong_password_fails_verification() {
        let value = rfc7616_authorize("SHA-256");
        assert_eq!(verify(&value, "circle of life", "GET"), Ok(false));
        assert_eq!(verify(&value, "", "GET"), Ok(false));
    }

    #[test]
    fn auth_int_only_is_unsupported() {
        let challenge =
            parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert_eq!(
            authorize(&challenge, &mufasa("p"), "INVITE", "sip:a@b", 1, "c"),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
    }

    #[test]
    fn cnonce_required_when_used() {
        let with_qop = parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=auth").unwrap();
        assert_eq!(
            authorize(&with_qop, &mufasa("p"), "INVITE", "sip:a@b", 1, ""),
            Err(AuthError::MissingCnonce)
        );
        let sess = parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").unwrap();
        assert_eq!(
            authorize(&sess, &mufasa("p"), "INVITE", "sip:a@b", 1, ""),
            Err(AuthError::MissingCnonce)
        );
        // -sess without qop still carries the cnonce it was computed with.
        let value = authorize(&sess, &mufasa("p"), "INVITE", "sip:a@b", 1, "xyz").unwrap();
        assert!(value.contains("cnonce=\"xyz\"") && !value.contains("nc="));
        assert_eq!(verify(&value, "p", "INVITE"), Ok(true));
    }

    #[test]
    fn refuses_header_injection() {
        let challenge = parse_challenge("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert_eq!(
            authorize(&challenge, &mufasa("p"), "INVITE", "sip:a\r\nX: y", 1, "c"),
            Err(AuthError::InvalidValue("uri"))
        );
        assert_eq!(
            authorize(&challenge, &mufasa("p"), "INV ITE", "sip:a", 1, "c"),
            Err(AuthError::InvalidValue("method"))
        );
        let mut evil = challenge.clone();
        evil.nonce = "n\r\nVia: x".into();
        assert_eq!(
            authorize(&evil, &mufasa("p"), "INVITE", "sip:a", 1, "c"),
            Err(AuthError::InvalidValue("nonce"))
        );
        assert!(matches!(
            parse_challenge("Digest realm=\"r\r\nX: y\", nonce=\"n\""),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn escapes_quotes_in_output_and_verifies() {
        let challenge =
            parse_challenge(r#"Digest realm="say \"hi\" \\o/", nonce="n", qop=auth"#).unwrap();
        assert_eq!(challenge.realm, r#"say "hi" \o/"#);
        let creds = Credentials {
            username: "bob \"the\" builder".into(),
            password: "pw".into(),
        };
        let value = authorize(&challenge, &creds, "INVITE", "sip:x", 1, "c").unwrap();
        assert!(value.contains(r#"realm="say \"hi\" \\o/""#), "{value}");
        assert!(
            value.contains(r#"username="bob \"the\" builder""#),
            "{value}"
        );
        let parsed = DigestResponse::parse(&value).unwrap();
        assert_eq!(parsed.username, creds.username);
        assert_eq!(parsed.realm, challenge.realm);
        assert_eq!(verify(&value, "pw", "INVITE"), Ok(true));
    }

    #[test]
    fn parses_odd_challenges() {
        let c = parse_challenge(
            "digest   nonce = \"a,b=c\" ,,realm=\"x y\",  algorithm = md5-SESS ,stale=TRUE,\
             foo=bar, qop=\" Auth , auth-int \",domain=\"sip:a sip:b\",opaque=\"\"",
        )
        .unwrap();
        assert_eq!(c.realm, "x y");
        assert_eq!(c.nonce, "a,b=c");
        assert_eq!(c.algorithm, Algorithm::Md5Sess);
        assert!(c.stale);
        assert_eq!(c.qop, vec!["auth".to_string(), "auth-int".to_string()]);
        assert_eq!(c.opaque, Some(String::new()));

        let c = parse_challenge("Digest realm=r,nonce=abc/+=,qop=auth,stale=false").unwrap();
        assert_eq!(c.realm, "r");
        assert_eq!(c.nonce, "abc/+=");
        assert_eq!(c.qop, vec!["auth".to_string()]);
        assert!(!c.stale);
        assert_eq!(c.opaque, None);

        let c = parse_challenge("Digest realm=\"\", nonce=\"n\", algorithm=sha-256").unwrap();
        assert_eq!(c.realm, "");
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn rejects_bad_challenges() {
        let err = |v: &str| parse_challenge(v).unwrap_err();
        assert_eq!(
            err("Basic realm=\"x\""),
            AuthError::NotDigest("Basic".into())
        );
        assert_eq!(err(""), AuthError::NotDigest(String::new()));
        assert_eq!(err("Digest nonce=\"n\""), AuthError::MissingParam("realm"));
        assert_eq!(err("Digest realm=\"r\""), AuthError::MissingParam("nonce"));
        assert_eq!(err("Digest"), AuthError::MissingParam("realm"));
        assert_eq!(
            err("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            AuthError::UnsupportedAlgorithm("SHA-512-256".into())
        );
        for bad in [
            "Digest realm=\"r, nonce=\"n",
            "Digest realm",
            "Digest realm=, nonce=n",
            "Digest realm=\"r\" nonce=\"n\"",
            "Digest =x",
            "Digest realm=\"r\\",
        ] {
            assert!(matches!(err(bad), AuthError::Malformed(_)), "{bad}");
        }
    }

    #[test]
    fn algorithm_parsing() {
        assert_eq!("md5".parse(), Ok(Algorithm::Md5));
        assert_eq!("MD5-Sess".parse(), Ok(Algorithm::Md5Sess));
        assert_eq!("sha-256".parse(), Ok(Algorithm::Sha256));
        assert_eq!("SHA-256-SESS".parse(), Ok(Algorithm::Sha256Sess));
        assert!("SHA-512-256".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::default(), Algorithm::Md5);
    }

    #[test]
    fn best_challenge_prefers_sha256() {
        let md5 = "Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
        let sha = "Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"";
        assert_eq!(best_challenge([md5, sha]).unwrap().nonce, "n2");
        assert_eq!(best_challenge([sha, md5]).unwrap().nonce, "n2");
        let unsupported = "Digest realm=\"r\", nonce=\"n3\", algorithm=SHA-512-256";
        let basic = "Basic realm=\"r\"";
        assert_eq!(
            best_challenge([unsupported, basic, md5]).unwrap().nonce,
            "n1"
        );
        // A SHA-256 challenge we cannot answer loses to an MD5 one we can.
        let sha_int = "Digest realm=\"r\", nonce=\"n4\", algorithm=SHA-256, qop=\"auth-int\"";
        assert_eq!(best_challenge([sha_int, md5]).unwrap().nonce, "n1");
        // Equal rank: the server's first choice.
        let md5b = "Digest realm=\"r\", nonce=\"n5\"";
        assert_eq!(best_challenge([md5b, md5]).unwrap().nonce, "n5");
        assert_eq!(best_challenge(Vec::<&str>::new()), None);
        assert_eq!(best_challenge([basic]), None);
    }

    #[test]
    fn verify_rejects_incomplete_headers() {
        assert_eq!(
            verify(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"",
                "p",
                "GET"
            ),
            Err(AuthError::MissingParam("response"))
        );
        assert_eq!(
            verify(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, nc=00000001",
                "p",
                "GET"
            ),
            Err(AuthError::MissingCnonce)
        );
        assert!(matches!(
            verify(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, nc=1, cnonce=\"c\"",
                "p",
                "GET"
            ),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(
            verify(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth-int, nc=00000001, cnonce=\"c\"",
                "p",
                "GET"
            ),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            verify("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "p", "GET"),
            Err(AuthError::NotDigest("Basic".into()))
        );
    }

    #[test]
    fn verify_accepts_uppercase_response_hex() {
        let value = rfc7616_authorize("MD5").replace(
            "8ca523f5e9506fed4657c9700eebdbec",
            "8CA523F5E9506FED4657C9700EEBDBEC",
        );
        assert_eq!(verify(&value, "Circle of Life", "GET"), Ok(true));
    }

    #[test]
    fn cnonce_is_random_hex() {
        let a = new_cnonce(&mut rand::thread_rng());
        let b = new_cnonce(&mut rand::thread_rng());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn credentials_debug_hides_password() {
        let shown = format!("{:?}", mufasa("Circle of Life"));
        assert!(shown.contains("Mufasa") && !shown.contains("Circle"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = StdRng::seed_from_u64(7616);
        let seed = rfc7616_authorize("SHA-256");
        let alphabet: Vec<char> = "Digest =\",\\ \r\n\tauthqopnc0123é\u{0}".chars().collect();
        for _ in 0..5000 {
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..chars.len());
                let c = alphabet[rng.gen_range(0..alphabet.len())];
                if rng.gen() {
                    chars[at] = c;
                } else {
                    chars.insert(at, c);
                }
            }
            let text: String = chars.into_iter().collect();
            let _ = verify(&text, "Circle of Life", "GET");
            if let Ok(c) = parse_challenge(&text) {
                let _ = authorize(&c, &mufasa("x"), "GET", "/", 1, "c");
            }
            let noise: String = (0..rng.gen_range(0..80))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = parse_challenge(&noise);
            let _ = best_challenge([noise.as_str(), text.as_str()]);
        }
        for (i, _) in seed.char_indices() {
            let _ = verify(&seed[..i], "Circle of Life", "GET");
            let _ = parse_challenge(&seed[..i]);
        }
    }
}
