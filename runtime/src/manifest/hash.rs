//! The `hash` field: `sha256:<64 lowercase hex digits>`, checked before a binary is compiled.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::ErrorKind;

/// A sha256 digest, as the manifest writes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses the manifest form. The error carries the kind a scenario matches on.
    pub fn parse(text: &str) -> Result<Digest, (ErrorKind, String)> {
        let Some((algorithm, hex_digest)) = text.split_once(':') else {
            return Err((
                ErrorKind::InvalidHashFormat,
                format!("invalid hash format `{text}`: expected `sha256:<64 hex digits>`"),
            ));
        };
        if algorithm != "sha256" {
            return Err((
                ErrorKind::UnsupportedHashAlgorithm,
                format!("unsupported hash algorithm `{algorithm}` in `{text}`: only sha256 is supported"),
            ));
        }
        let valid = hex_digest.len() == 64
            && hex_digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err((
                ErrorKind::InvalidHashFormat,
                format!("invalid hash format `{text}`: the digest must be 64 lowercase hex digits"),
            ));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).expect("checked: 64 hex digits");
        Ok(Digest(digest))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_manifest_form() {
        let digest = Digest::of(b"abc");
        let text = digest.to_string();
        assert_eq!(
            text,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&text).unwrap(), digest);
    }

    #[test]
    fn names_the_problem() {
        let kind = |s: &str| Digest::parse(s).unwrap_err().0;
        assert_eq!(kind("abc"), ErrorKind::InvalidHashFormat);
        assert_eq!(kind("md5:abc"), ErrorKind::UnsupportedHashAlgorithm);
        assert_eq!(kind("sha256:abc"), ErrorKind::InvalidHashFormat);
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(kind(&upper), ErrorKind::InvalidHashFormat);
    }
}
