//! Webhook signatures: HMAC-SHA256 (RFC 2104) over `"<timestamp>.<body>"` with the
//! subscription's secret, sent as `Parley-Signature: t=<unix seconds>,v1=<hex>`, so a receiver
//! can check both who sent a delivery and that it is fresh (replays carry old timestamps).

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The `Parley-Signature` header value for `body` sent at `unix_s`.
pub fn signature(secret: &str, unix_s: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{unix_s}.{body}").as_bytes());
    format!("t={unix_s},v1={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_header_carries_the_time_and_the_mac() {
        let h = signature("s3cret", 1_796_327_062, "{}");
        assert!(h.starts_with("t=1796327062,v1="));
        assert_eq!(h.len(), "t=1796327062,v1=".len() + 64);
        assert_ne!(h, signature("other", 1_796_327_062, "{}"));
    }
}
