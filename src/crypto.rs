//! The few cryptographic primitives herald uses in more than one place: comparing secrets
//! without leaking where they differ, and keyed hashes for webhook signatures and derived
//! secrets.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `given` equals `expected`, in time that does not depend on where they first differ
/// (a secret compared byte by byte with an early exit tells an attacker how much of a guess is
/// right). Values of different lengths are unequal at once: only the length shows.
pub fn constant_time_eq(given: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) -> bool {
    let (given, expected) = (given.as_ref(), expected.as_ref());
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// HMAC-SHA256 under `key` of `parts`, one after another (as if joined).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `body` under `key`, as lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, &[body]))
}

/// HMAC-SHA1 of `body` under `key`, as lower-case hex (Webex signs its webhooks so).
pub fn hmac_sha1_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_agree() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("", "x"));
    }

    #[test]
    fn hmacs_match_published_vectors() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 2202, test case 2.
        assert_eq!(
            hmac_sha1_hex(b"Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hmac_sha256(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .expect("hex")
        );
    }
}
