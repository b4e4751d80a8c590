//! Owns [`InfoHash`]: a torrent's identity, either a BitTorrent v1 SHA-1 (20 bytes) or a v2
//! SHA-256 (32 bytes), with strict hex parsing and format-aware serde (hex text in JSON, raw
//! bytes in MessagePack).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// A torrent's info hash.
///
/// Text form (`Display`, [`InfoHash::to_hex`], JSON) is lowercase hex: 40 characters for v1,
/// 64 for v2 — the form the Go library writes. Ordering sorts all v1 hashes before all v2
/// hashes, then bytewise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InfoHash {
    /// BitTorrent v1: SHA-1 of the bencoded info dictionary.
    V1([u8; 20]),
    /// BitTorrent v2: SHA-256 of the bencoded info dictionary.
    V2([u8; 32]),
}

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `"000102…ff"`: two lowercase hex digits for every byte value, so [`InfoHash::shard_prefix`]
/// can hand out a `&'static str` (the file projection asks for one per torrent file).
const HEX_PAIRS: [u8; 512] = {
    let mut table = [0u8; 512];
    let mut i = 0;
    while i < 256 {
        table[2 * i] = HEX[i >> 4];
        table[2 * i + 1] = HEX[i & 0xf];
        i += 1;
    }
    table
};

/// Longest input echoed back in an error message.
const MAX_ECHO_CHARS: usize = 80;

impl Default for InfoHash {
    /// The all-zero v1 hash (a placeholder, never a real torrent).
    fn default() -> InfoHash {
        InfoHash::V1([0; 20])
    }
}

impl InfoHash {
    /// Parses 40 (v1) or 64 (v2) hex characters, upper or lower case, nothing else (no
    /// whitespace, no `0x`, no `urn:btih:`).
    ///
    /// Errors are [`Error::InvalidInfoHash`] with reasons such as
    /// `expected 40 or 64 hex characters, got 39` or
    /// `invalid hex character 'g' at position 5` (positions count characters from 0).
    pub fn parse(s: &str) -> Result<InfoHash> {
        let len = s.chars().count();
        if len != 40 && len != 64 {
            return Err(invalid(
                s,
                format!("expected 40 or 64 hex characters, got {len}"),
            ));
        }
        // The length check counted characters; a non-ASCII character makes the byte length
        // differ, and is reported by the digit scan below at its character position.
        let mut out = [0u8; 32];
        let mut nibbles = s.chars().enumerate().map(|(pos, c)| match c.to_digit(16) {
            // to_digit(16) is < 16, so the cast cannot truncate.
            Some(d) => Ok(d as u8),
            None => Err(invalid(
                s,
                format!("invalid hex character {c:?} at position {pos}"),
            )),
        });
        for byte in out.iter_mut().take(len / 2) {
            let (Some(hi), Some(lo)) = (nibbles.next(), nibbles.next()) else {
                break;
            };
            *byte = (hi? << 4) | lo?;
        }
        InfoHash::from_bytes(&out[..len / 2])
    }

    /// Builds a hash from 20 (v1) or 32 (v2) raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<InfoHash> {
        if let Ok(v1) = <[u8; 20]>::try_from(bytes) {
            Ok(InfoHash::V1(v1))
        } else if let Ok(v2) = <[u8; 32]>::try_from(bytes) {
            Ok(InfoHash::V2(v2))
        } else {
            Err(Error::InvalidInfoHash {
                input: truncate_for_echo(&hex::encode(bytes)),
                reason: format!("expected 20 or 32 bytes, got {}", bytes.len()),
            })
        }
    }

    /// The raw hash bytes (20 or 32).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            InfoHash::V1(b) => b,
            InfoHash::V2(b) => b,
        }
    }

    /// Whether this is a v1 (SHA-1) hash.
    pub fn is_v1(&self) -> bool {
        matches!(self, InfoHash::V1(_))
    }

    /// Lowercase hex (40 or 64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// The first two lowercase hex characters (the first byte), e.g. for sharding directories.
    /// Does not allocate.
    pub fn shard_prefix(&self) -> &'static str {
        let i = 2 * usize::from(self.as_bytes()[0]);
        // HEX_PAIRS is ASCII, so this never fails.
        std::str::from_utf8(&HEX_PAIRS[i..i + 2]).unwrap_or("00")
    }
}

fn invalid(input: &str, reason: String) -> Error {
    Error::InvalidInfoHash {
        input: truncate_for_echo(input),
        reason,
    }
}

fn truncate_for_echo(input: &str) -> String {
    if input.chars().count() <= MAX_ECHO_CHARS {
        input.to_owned()
    } else {
        let mut s: String = input.chars().take(MAX_ECHO_CHARS).collect();
        s.push('…');
        s
    }
}

impl FromStr for InfoHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<InfoHash> {
        InfoHash::parse(s)
    }
}

impl TryFrom<&[u8]> for InfoHash {
    type Error = Error;

    fn try_from(bytes: &[u8]) -> Result<InfoHash> {
        InfoHash::from_bytes(bytes)
    }
}

impl From<[u8; 20]> for InfoHash {
    fn from(b: [u8; 20]) -> InfoHash {
        InfoHash::V1(b)
    }
}

impl From<[u8; 32]> for InfoHash {
    fn from(b: [u8; 32]) -> InfoHash {
        InfoHash::V2(b)
    }
}

impl AsRef<[u8]> for InfoHash {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.as_bytes() {
            let i = 2 * usize::from(b);
            f.write_str(std::str::from_utf8(&HEX_PAIRS[i..i + 2]).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

impl Serialize for InfoHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(self.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(InfoHashVisitor)
        } else {
            deserializer.deserialize_bytes(InfoHashVisitor)
        }
    }
}

/// Accepts hex text, raw bytes, or a sequence of `u8` (what some encoders produce for byte
/// arrays).
struct InfoHashVisitor;

impl<'de> Visitor<'de> for InfoHashVisitor {
    type Value = InfoHash;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an info hash: 40 or 64 hex characters, or 20 or 32 bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<InfoHash, E> {
        InfoHash::parse(v).map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<InfoHash, E> {
        InfoHash::from_bytes(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<InfoHash, A::Error> {
        let mut buf = [0u8; 32];
        let mut n = 0usize;
        while let Some(b) = seq.next_element::<u8>()? {
            if n == buf.len() {
                return Err(de::Error::custom(
                    "invalid info hash: expected 20 or 32 bytes, got more than 32",
                ));
            }
            buf[n] = b;
            n += 1;
        }
        InfoHash::from_bytes(&buf[..n]).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    const V2_HEX: &str = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";

    #[test]
    fn parses_v1_and_v2_in_any_case() {
        let h = InfoHash::parse(V1_HEX).unwrap();
        assert!(h.is_v1());
        assert_eq!(h.as_bytes().len(), 20);
        assert_eq!(h.to_hex(), V1_HEX);
        assert_eq!(h.to_string(), V1_HEX);
        assert_eq!(InfoHash::parse(&V1_HEX.to_uppercase()).unwrap(), h);
        assert_eq!(format!("{h:?}"), format!("InfoHash({V1_HEX})"));
        assert_eq!(h.shard_prefix(), "c1");

        let h2: InfoHash = V2_HEX.parse().unwrap();
        assert!(!h2.is_v1());
        assert_eq!(h2.as_bytes().len(), 32);
        assert_eq!(h2.to_string(), V2_HEX);
        assert_eq!(h2.shard_prefix(), "ca");
        assert!(h < h2);
        assert_eq!(InfoHash::default().to_hex(), "0".repeat(40));
        assert_eq!(InfoHash::V1([0xff; 20]).shard_prefix(), "ff");
        assert_eq!(InfoHash::V1([0x0a; 20]).shard_prefix(), "0a");
    }

    #[test]
    fn wrong_length_error() {
        let err = InfoHash::parse(&V1_HEX[..39]).unwrap_err();
        match &err {
            Error::InvalidInfoHash { input, reason } => {
                assert_eq!(input, &V1_HEX[..39]);
                assert_eq!(reason, "expected 40 or 64 hex characters, got 39");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "invalid info hash \"{}\": expected 40 or 64 hex characters, got 39",
                &V1_HEX[..39]
            )
        );
        let reason = |s: &str| match InfoHash::parse(s).unwrap_err() {
            Error::InvalidInfoHash { reason, .. } => reason,
            other => panic!("unexpected error {other:?}"),
        };
        assert_eq!(reason(""), "expected 40 or 64 hex characters, got 0");
        assert_eq!(
            reason(&"a".repeat(41)),
            "expected 40 or 64 hex characters, got 41"
        );
        assert_eq!(
            reason(&format!(" {V1_HEX}")),
            "expected 40 or 64 hex characters, got 41"
        );
    }

    #[test]
    fn bad_character_error() {
        let mut s = V1_HEX.to_owned();
        s.replace_range(5..6, "g");
        match InfoHash::parse(&s).unwrap_err() {
            Error::InvalidInfoHash { input, reason } => {
                assert_eq!(input, s);
                assert_eq!(reason, "invalid hex character 'g' at position 5");
            }
            other => panic!("unexpected error {other:?}"),
        }
        // A multi-byte character counts as one position and one character.
        let s = format!("é{}", &V1_HEX[1..]);
        match InfoHash::parse(&s).unwrap_err() {
            Error::InvalidInfoHash { reason, .. } => {
                assert_eq!(reason, "invalid hex character 'é' at position 0");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let s = format!("{}-", &V1_HEX[..39]);
        match InfoHash::parse(&s).unwrap_err() {
            Error::InvalidInfoHash { reason, .. } => {
                assert_eq!(reason, "invalid hex character '-' at position 39");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn long_input_is_truncated_in_errors() {
        let long = "z".repeat(10_000);
        match InfoHash::parse(&long).unwrap_err() {
            Error::InvalidInfoHash { input, reason } => {
                assert_eq!(input.chars().count(), MAX_ECHO_CHARS + 1);
                assert_eq!(reason, "expected 40 or 64 hex characters, got 10000");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn from_bytes_checks_length() {
        assert!(InfoHash::from_bytes(&[1; 20]).unwrap().is_v1());
        assert!(!InfoHash::from_bytes(&[1; 32]).unwrap().is_v1());
        match InfoHash::from_bytes(&[0xab; 19]).unwrap_err() {
            Error::InvalidInfoHash { input, reason } => {
                assert_eq!(input, "ab".repeat(19));
                assert_eq!(reason, "expected 20 or 32 bytes, got 19");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn serde_json_is_hex_msgpack_is_bytes() {
        for h in [
            InfoHash::parse(V1_HEX).unwrap(),
            InfoHash::parse(V2_HEX).unwrap(),
        ] {
            let json = serde_json::to_string(&h).unwrap();
            assert_eq!(json, format!("\"{h}\""));
            assert_eq!(serde_json::from_str::<InfoHash>(&json).unwrap(), h);

            let bin = rmp_serde::to_vec(&h).unwrap();
            // bin8 marker, length, then the raw bytes.
            assert_eq!(bin[0], 0xc4);
            assert_eq!(usize::from(bin[1]), h.as_bytes().len());
            assert_eq!(&bin[2..], h.as_bytes());
            assert_eq!(rmp_serde::from_slice::<InfoHash>(&bin).unwrap(), h);

            // A sequence of u8 is accepted too.
            let seq = rmp_serde::to_vec(&h.as_bytes().to_vec()).unwrap();
            assert_eq!(rmp_serde::from_slice::<InfoHash>(&seq).unwrap(), h);
        }
        let err = serde_json::from_str::<InfoHash>("\"abc\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 40 or 64 hex characters, got 3"),
            "{err}"
        );
        let bad = rmp_serde::to_vec(&vec![1u8; 21]).unwrap();
        assert!(rmp_serde::from_slice::<InfoHash>(&bad).is_err());
        let bad = rmp_serde::to_vec(&vec![1u8; 40]).unwrap();
        assert!(rmp_serde::from_slice::<InfoHash>(&bad).is_err());
    }
}
