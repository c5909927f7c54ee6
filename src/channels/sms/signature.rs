//! The `X-Twilio-Signature` header of Twilio's webhooks: base64 of HMAC-SHA1, keyed with the
//! account's auth token, over the full URL Twilio requested followed by every POST parameter's
//! name and value, sorted by name (repeated names by value). Checking it is what tells a
//! genuine inbound SMS or status callback from a forged one.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for a POST of `params` to `url` (the URL exactly as configured
/// in Twilio, query string included).
pub fn expected(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // Sorting the pairs sorts by name, then by value within a name. A pair sent twice counts
    // once, as in twilio-python's validator (9.x), which the tests compare against.
    pairs.sort_unstable();
    pairs.dedup();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` (the `X-Twilio-Signature` value; empty when the header is missing) signs
/// `params` posted to `url`. Twilio's backend sometimes signs the URL with the scheme's
/// default port written out (`https://host:443/...`) and sometimes without it, so, like
/// Twilio's own validators, both forms are accepted. Only the default port is added or
/// removed: a URL on another port must be signed with that port.
pub fn valid(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    if header.is_empty() {
        return false;
    }
    let as_given = same(&expected(auth_token, url, params), header);
    let other_form = default_port_toggled(url)
        .is_some_and(|other| same(&expected(auth_token, &other, params), header));
    as_given | other_form
}

/// Constant-time comparison, so the time taken does not tell how much of a forged signature
/// was right (the length is not secret: every signature is 28 characters).
fn same(expected: &str, header: &str) -> bool {
    expected.as_bytes().ct_eq(header.as_bytes()).into()
}

/// `url` with the scheme's default port (https 443, http 80) added when it has no port, or
/// removed when it has that port; `None` for another port, another scheme, or no authority.
fn default_port_toggled(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port follows the host, after any user info; an IPv6 host ([::1]) has colons of its
    // own, inside its brackets.
    let host_at = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_at);
    let port_colon = host_port
        .rfind(':')
        .filter(|&colon| !host_port[colon..].contains(']'));
    match port_colon {
        None => Some(format!("{scheme}://{authority}:{default}{tail}")),
        Some(colon) if &host_port[colon + 1..] == default => {
            let host = &host_port[..colon];
            Some(format!("{scheme}://{userinfo}{host}{tail}"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    /// Published in Twilio's "Secure webhooks" guide for the request below; also what
    /// Python's hmac module computes for it.
    const DOCUMENTED: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's example request, written out of order on purpose: the signature sorts them.
    fn documented_params() -> Vec<(String, String)> {
        params(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
        ])
    }

    #[test]
    fn twilios_documented_example() {
        assert_eq!(expected(TOKEN, URL, &documented_params()), DOCUMENTED);
        assert!(valid(TOKEN, URL, &documented_params(), DOCUMENTED));
    }

    #[test]
    fn tampered_request_is_rejected() {
        let mut tampered = documented_params();
        tampered[2].1 = "9999".into(); // Digits
        assert!(!valid(TOKEN, URL, &tampered, DOCUMENTED));

        let mut extra = documented_params();
        extra.push(("Body".into(), "hi".into()));
        assert!(!valid(TOKEN, URL, &extra, DOCUMENTED));

        let fewer = &documented_params()[1..];
        assert!(!valid(TOKEN, URL, fewer, DOCUMENTED));

        let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert!(!valid(TOKEN, other_url, &documented_params(), DOCUMENTED));
        assert!(!valid("54321", URL, &documented_params(), DOCUMENTED));
    }

    #[test]
    fn missing_or_malformed_header_is_rejected() {
        assert!(!valid(TOKEN, URL, &documented_params(), ""));
        assert!(!valid(TOKEN, URL, &documented_params(), &DOCUMENTED[1..]));
        let longer = format!("{DOCUMENTED}=");
        assert!(!valid(TOKEN, URL, &documented_params(), &longer));
        let lower = DOCUMENTED.to_ascii_lowercase();
        assert!(!valid(TOKEN, URL, &documented_params(), &lower));
    }

    #[test]
    fn default_port_variants_are_accepted() {
        let p = documented_params();
        let cases = [
            (
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
            ),
            ("http://example.com:80/sms", "http://example.com/sms"),
            ("https://[2001:db8::1]:443/sms", "https://[2001:db8::1]/sms"),
            (
                "https://user:pw@example.com:443",
                "https://user:pw@example.com",
            ),
        ];
        for (with_port, without) in cases {
            let signed_with = expected(TOKEN, with_port, &p);
            let signed_without = expected(TOKEN, without, &p);
            assert_ne!(signed_with, signed_without);
            assert!(valid(TOKEN, without, &p, &signed_with), "{with_port}");
            assert!(valid(TOKEN, with_port, &p, &signed_without), "{without}");
        }
    }

    #[test]
    fn other_ports_are_not_toggled() {
        let p = documented_params();
        // The default port of the other scheme, or any other port, is part of the URL.
        let signed = expected(TOKEN, "https://example.com:8443/sms", &p);
        assert!(!valid(TOKEN, "https://example.com/sms", &p, &signed));
        let signed = expected(TOKEN, "https://example.com:80/sms", &p);
        assert!(!valid(TOKEN, "https://example.com/sms", &p, &signed));
        let signed = expected(TOKEN, "https://example.com:443/sms", &p);
        assert!(!valid(TOKEN, "https://example.com:4430/sms", &p, &signed));
        assert_eq!(default_port_toggled("ftp://example.com/x"), None);
        assert_eq!(default_port_toggled("/relative/path"), None);
    }

    #[test]
    fn repeated_names_are_sorted_by_value() {
        let url = "https://example.com/sms";
        let mut mac = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(b"https://example.com/smsAaAbBz");
        let by_hand = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        // Also what twilio-python 9.13.0's RequestValidator computes (tests/support/twilio_sign.py).
        assert_eq!(by_hand, "FvmHi6Yy2pPTd/WimFrP3HIc7O4=");
        let p = params(&[("B", "z"), ("A", "b"), ("A", "a")]);
        assert_eq!(expected(TOKEN, url, &p), by_hand);
        // A pair sent twice counts once.
        let twice = params(&[("B", "z"), ("A", "b"), ("A", "a"), ("A", "b")]);
        assert_eq!(expected(TOKEN, url, &twice), by_hand);
    }

    #[test]
    fn non_ascii_values_are_signed_as_utf8() {
        // Computed with twilio-python 9.13.0 (tests/support/twilio_sign.py sign ...).
        let p = params(&[
            ("Body", "Héllo wörld 😀 & more"),
            ("From", "+14155550100"),
            ("To", "+14155550199"),
            ("MessageSid", "SM123"),
            ("NumMedia", "0"),
        ]);
        let url = "https://parley.example:8443/sms/inbound?tenant=a%20b";
        assert_eq!(expected("tok en", url, &p), "00NqFYXG7XdYZ9F1okjszpiuaSc=");
    }

    #[test]
    fn no_params_signs_the_url_alone() {
        let mut mac = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(URL.as_bytes());
        let by_hand = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(expected(TOKEN, URL, &[]), by_hand);
    }
}
