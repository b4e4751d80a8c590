//! One record on disk: a frame header (length, CRC32C, seq, time) followed by the payload.
//!
//! Layout (little-endian), specified in `docs/FORMAT.md`:
//!
//! ```text
//! 0   u32  payload length in bytes (0 is the end-of-data marker, never a frame); since
//!          format version 2 the top bit marks the first frame of a write batch
//! 4   u32  CRC32C of bytes 0..4 ++ bytes 8..24 ++ payload (everything but this field)
//! 8   u64  seq
//! 16  i64  at: commit time, nanoseconds since the Unix epoch, UTC
//! 24  ..   payload (a MessagePack-encoded event)
//! ```
//!
//! The CRC covers the length and seq so that a frame cut at a frame boundary, or a stale frame
//! left from older contents, cannot pass as valid.
//!
//! The batch mark exists so that recovery can tell a torn, never-acknowledged final batch from
//! damage in the middle of the log: a power cut can persist a batch's later pages and lose an
//! earlier one, and the valid frames after such a hole belong to the same batch (no mark),
//! whereas a valid frame after real damage starts a later batch (marked).

/// Bytes in a frame header.
pub const FRAME_HEADER_BYTES: usize = 24;

/// The length field's top bit: set on the first frame of each write batch (format version 2).
/// Lengths never reach it (the payload limit is 2^28), so version 1 frames never carry it.
pub const BATCH_START_BIT: u32 = 1 << 31;

/// The largest payload the format allows. Decoding rejects larger lengths as corrupt without
/// allocating; writers enforce the (smaller) configured `max_event_bytes`.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

/// A decoded frame borrowing its payload from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The sequence number.
    pub seq: u64,
    /// The commit time, Unix nanoseconds.
    pub at_unix_nanos: i64,
    /// Whether this frame starts a write batch (the length field's top bit; `docs/FORMAT.md`).
    pub batch_start: bool,
    /// The payload bytes (an encoded event).
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Bytes this frame occupies on disk.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload.len()
    }
}

/// Why no frame could be decoded at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a writer may still be writing it, or a crash cut it.
    Incomplete {
        /// Bytes the frame needs.
        needed_bytes: usize,
        /// Bytes there are.
        available_bytes: usize,
    },
    /// An all-zero header: the end of the data (the rest of the segment is unused).
    EndMarker,
    /// The length field exceeds the format's limit.
    LengthTooLarge {
        /// The length found.
        len_bytes: usize,
    },
    /// A zero length with other non-zero header bytes.
    ZeroLength,
    /// The stored checksum does not match the bytes.
    ChecksumMismatch {
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes.
        got: u32,
    },
}

/// Appends one encoded frame to `out`, marked as a batch of its own: the strict choice, since
/// recovery then treats any valid frame after damage as proof that the damage is not torn.
pub fn encode(out: &mut Vec<u8>, seq: u64, at_unix_nanos: i64, payload: &[u8]) {
    encode_marked(out, seq, at_unix_nanos, payload, true);
}

/// Appends one encoded frame to `out`; `batch_start` sets [`BATCH_START_BIT`] (only for
/// segments of format version 2 or later).
pub fn encode_marked(
    out: &mut Vec<u8>,
    seq: u64,
    at_unix_nanos: i64,
    payload: &[u8],
    batch_start: bool,
) {
    assert!(!payload.is_empty(), "a frame payload is never empty");
    assert!(
        payload.len() <= MAX_FRAME_PAYLOAD_BYTES,
        "frame payload over the format limit"
    );
    let len = payload.len() as u32;
    // `|` and `^` agree here (mutation testing notes the equivalence): the length never
    // reaches the mark's bit, which the format limit above guarantees.
    let mark = if batch_start { BATCH_START_BIT } else { 0 };
    let start = out.len();
    out.extend_from_slice(&(len | mark).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&at_unix_nanos.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = checksum(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC32C of a whole encoded frame, skipping its CRC field (bytes 4..8).
fn checksum(frame: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&frame[..4]);
    crc32c::crc32c_append(crc, &frame[8..])
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<FrameRef<'_>, FrameError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Incomplete {
            needed_bytes: FRAME_HEADER_BYTES,
            available_bytes: buf.len(),
        });
    }
    let raw_len = u32::from_le_bytes(field(buf, 0));
    let batch_start = raw_len & BATCH_START_BIT != 0;
    let len = (raw_len & !BATCH_START_BIT) as usize;
    if len == 0 {
        return Err(if buf[..FRAME_HEADER_BYTES].iter().all(|&b| b == 0) {
            FrameError::EndMarker
        } else {
            FrameError::ZeroLength
        });
    }
    if len > MAX_FRAME_PAYLOAD_BYTES {
        return Err(FrameError::LengthTooLarge { len_bytes: len });
    }
    let total = FRAME_HEADER_BYTES + len;
    if buf.len() < total {
        return Err(FrameError::Incomplete {
            needed_bytes: total,
            available_bytes: buf.len(),
        });
    }
    let expected = u32::from_le_bytes(field(buf, 4));
    let got = checksum(&buf[..total]);
    if expected != got {
        return Err(FrameError::ChecksumMismatch { expected, got });
    }
    Ok(FrameRef {
        seq: u64::from_le_bytes(field(buf, 8)),
        at_unix_nanos: i64::from_le_bytes(field(buf, 16)),
        batch_start,
        payload: &buf[FRAME_HEADER_BYTES..total],
    })
}

/// The payload length a header claims, batch mark removed, without verifying anything (for
/// reports on damaged bytes).
pub fn peek_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 4).then(|| (u32::from_le_bytes(field(buf, 0)) & !BATCH_START_BIT) as usize)
}

/// The seq field of a header, without verifying anything (for error messages).
pub fn peek_seq(buf: &[u8]) -> Option<u64> {
    (buf.len() >= 16).then(|| u64::from_le_bytes(field(buf, 8)))
}

fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&buf[at..at + N]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, seq, 1_700_000_000_000_000_000, payload);
        buf
    }

    #[test]
    fn round_trip() {
        let buf = one(7, b"hello");
        let frame = decode(&buf).unwrap();
        assert_eq!(frame.seq, 7);
        assert_eq!(frame.at_unix_nanos, 1_700_000_000_000_000_000);
        assert_eq!(frame.payload, b"hello");
        assert_eq!(frame.encoded_len(), buf.len());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = one(1, b"payload");
        for cut in 1..buf.len() {
            let err = decode(&buf[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Incomplete { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let buf = one(3, b"some payload bytes");
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} went undetected");
        }
    }

    #[test]
    fn zeros_are_the_end_marker() {
        assert_eq!(decode(&[0; 40]), Err(FrameError::EndMarker));
        let mut header = [0u8; 24];
        header[9] = 1;
        assert_eq!(decode(&header), Err(FrameError::ZeroLength));
    }

    #[test]
    fn the_batch_mark_round_trips_and_is_covered_by_the_checksum() {
        let mut buf = Vec::new();
        encode_marked(&mut buf, 4, 9, b"abc", false);
        let unmarked = decode(&buf).unwrap();
        assert!(!unmarked.batch_start);
        assert_eq!(unmarked.payload, b"abc");
        assert!(decode(&one(4, b"abc")).unwrap().batch_start);

        buf[3] ^= 0x80; // set the mark without updating the checksum
        let err = decode(&buf).unwrap_err();
        assert!(
            matches!(err, FrameError::ChecksumMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn the_length_limit_is_inclusive() {
        let mut header = one(1, b"x")[..FRAME_HEADER_BYTES].to_vec();
        let at_limit = MAX_FRAME_PAYLOAD_BYTES as u32;
        header[..4].copy_from_slice(&at_limit.to_le_bytes());
        assert_eq!(
            decode(&header),
            Err(FrameError::Incomplete {
                needed_bytes: FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES,
                available_bytes: FRAME_HEADER_BYTES,
            }),
            "a frame of exactly the limit is allowed (and incomplete here)"
        );
        header[..4].copy_from_slice(&(at_limit + 1).to_le_bytes());
        assert_eq!(
            decode(&header),
            Err(FrameError::LengthTooLarge {
                len_bytes: MAX_FRAME_PAYLOAD_BYTES + 1
            })
        );
    }

    #[test]
    fn peeks_read_the_header_fields_from_as_few_bytes_as_they_need() {
        let mut marked = Vec::new();
        encode_marked(&mut marked, 7, 9, b"hello", true);
        let mut unmarked = Vec::new();
        encode_marked(&mut unmarked, 7, 9, b"hello", false);
        for buf in [&marked, &unmarked] {
            // The length without the batch mark, from the 4 bytes of its field and no fewer.
            assert_eq!(peek_len(buf), Some(5));
            assert_eq!(peek_len(&buf[..4]), Some(5));
            assert_eq!(peek_len(&buf[..3]), None);
            // The seq from the 16 bytes up to the end of its field and no fewer.
            assert_eq!(peek_seq(buf), Some(7));
            assert_eq!(peek_seq(&buf[..16]), Some(7));
            assert_eq!(peek_seq(&buf[..15]), None);
        }
    }

    #[test]
    fn the_length_limit_is_the_formats_256_mib() {
        // docs/FORMAT.md: "1 ..= 268 435 456 (256 MiB)". Written out, so that a change of the
        // constant is a change of the format that a test notices.
        assert_eq!(MAX_FRAME_PAYLOAD_BYTES, 268_435_456);
        assert_eq!(BATCH_START_BIT, 0x8000_0000);
    }

    #[test]
    fn forged_huge_length_is_rejected_without_reading() {
        let mut buf = one(1, b"x");
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::LengthTooLarge {
                len_bytes: !BATCH_START_BIT as usize
            }
        );
    }
}
