//! One segment file: its header, its name, and a scanner that walks its frames.
//!
//! Header layout (32 bytes, little-endian), specified in `docs/FORMAT.md`:
//!
//! ```text
//! 0   [u8; 8]  magic "TJSEGMNT"
//! 8   u8       format version (1 or 2; 2 marks the first frame of each batch)
//! 9   [u8; 3]  reserved, zero
//! 12  u64      first seq: the seq of the segment's first frame (also its file name)
//! 20  i64      created at, nanoseconds since the Unix epoch, UTC
//! 28  u32      CRC32C of bytes 0..28
//! ```

use super::frame::{self, FRAME_HEADER_BYTES, FrameError, FrameRef};

/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TJSEGMNT";
/// The segment format this build writes by default, and the newest it reads.
pub const FORMAT_VERSION: u8 = 2;
/// The first format version whose frames mark the start of each write batch.
pub const FIRST_VERSION_MARKING_BATCHES: u8 = 2;
/// Bytes in a segment header; the first frame starts here.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version.
    pub version: u8,
    /// The first seq, if any event.
    pub first_seq: u64,
    /// When the segment was created, Unix nanoseconds.
    pub created_unix_nanos: i64,
}

/// Why a segment header is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    TooShort {
        /// The length found.
        len_bytes: usize,
    },
    /// The file does not start with the segment magic.
    BadMagic,
    /// The header's checksum does not match.
    ChecksumMismatch {
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes.
        got: u32,
    },
    /// A newer (or unknown) format version.
    UnsupportedVersion {
        /// The version the file declares.
        found: u8,
    },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { len_bytes } => write!(
                f,
                "segment header truncated: {len_bytes} of {SEGMENT_HEADER_BYTES} bytes"
            ),
            Self::BadMagic => write!(f, "not a torrent-journal segment (bad magic)"),
            Self::ChecksumMismatch { expected, got } => write!(
                f,
                "segment header checksum mismatch: expected {expected:#010x}, got {got:#010x}"
            ),
            Self::UnsupportedVersion { found } => write!(f, "unsupported format version {found}"),
        }
    }
}

impl SegmentHeader {
    /// Whether this segment's frames mark the first frame of each write batch.
    pub fn marks_batches(&self) -> bool {
        self.version >= FIRST_VERSION_MARKING_BATCHES
    }

    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8] = self.version;
        out[12..20].copy_from_slice(&self.first_seq.to_le_bytes());
        out[20..28].copy_from_slice(&self.created_unix_nanos.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header. The version is checked after the checksum, so a flipped
    /// version bit reads as damage, not as a journal from the future.
    pub fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        if buf.len() < SEGMENT_HEADER_BYTES {
            return Err(HeaderError::TooShort {
                len_bytes: buf.len(),
            });
        }
        if buf[..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let expected = u32::from_le_bytes([buf[28], buf[29], buf[30], buf[31]]);
        let got = crc32c::crc32c(&buf[..28]);
        if expected != got {
            return Err(HeaderError::ChecksumMismatch { expected, got });
        }
        let version = buf[8];
        if version == 0 || version > FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[12..20]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&buf[20..28]);
        Ok(Self {
            version,
            first_seq: u64::from_le_bytes(seq),
            created_unix_nanos: i64::from_le_bytes(at),
        })
    }
}

/// `<first seq, 20 digits>.seg`: names sort in seq order.
pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first seq a segment file name encodes, or `None` for other files.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A frame and where it starts in its segment.
#[derive(Debug, Clone, Copy)]
pub struct FrameAt<'a> {
    /// Byte offset of the frame (or damage) in the file.
    pub offset: usize,
    /// The frame.
    pub frame: FrameRef<'a>,
}

/// What ended a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// All bytes from `offset` on are zero (or there are none): the data ends here.
    Clean {
        /// Byte offset of the frame (or damage) in the file.
        offset: usize,
    },
    /// The bytes at `offset` are not a valid next frame.
    Damaged {
        /// Byte offset of the frame (or damage) in the file.
        offset: usize,
        /// What is wrong there.
        damage: Damage,
    },
}

/// Ways the bytes at a position fail to be the next frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The frame does not decode.
    Frame(FrameError),
    /// A valid frame whose seq does not continue the sequence.
    SeqBreak {
        /// The seq that should have come next.
        expected: u64,
        /// The seq found there.
        found: u64,
    },
    /// An end marker followed by non-zero bytes.
    BytesAfterEnd,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(FrameError::Incomplete {
                needed_bytes,
                available_bytes,
            }) => write!(
                f,
                "incomplete frame: needs {needed_bytes} bytes, {available_bytes} present"
            ),
            Self::Frame(FrameError::LengthTooLarge { len_bytes }) => {
                write!(f, "frame length {len_bytes} exceeds the format limit")
            }
            Self::Frame(FrameError::ZeroLength) => write!(f, "zero frame length"),
            Self::Frame(FrameError::EndMarker) => write!(f, "end marker"),
            Self::Frame(FrameError::ChecksumMismatch { expected, got }) => write!(
                f,
                "checksum mismatch: expected {expected:#010x}, got {got:#010x}"
            ),
            Self::SeqBreak { expected, found } => {
                write!(f, "expected seq {expected}, found {found}")
            }
            Self::BytesAfterEnd => write!(f, "non-zero bytes after the end marker"),
        }
    }
}

/// Walks the frames of one segment's bytes, checking checksums and seq continuity.
/// After the iterator returns `None`, [`Scan::stop`] says why.
#[derive(Debug)]
pub struct Scan<'a> {
    buf: &'a [u8],
    pos: usize,
    expected_seq: u64,
    stop: Option<Stop>,
}

impl<'a> Scan<'a> {
    /// Scans `buf` (a whole segment, header included) whose header says `first_seq`.
    pub fn new(buf: &'a [u8], first_seq: u64) -> Self {
        Self::starting_at(buf, SEGMENT_HEADER_BYTES, first_seq)
    }

    /// Scans from `offset`, expecting the frame there to carry `expected_seq`.
    pub fn starting_at(buf: &'a [u8], offset: usize, expected_seq: u64) -> Self {
        assert!(offset <= buf.len(), "scan offset beyond the buffer");
        Self {
            buf,
            pos: offset,
            expected_seq,
            stop: None,
        }
    }

    /// Why the scan ended (`None` while it is still running).
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// The seq the next frame would carry.
    pub fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    fn end(&mut self, stop: Stop) -> Option<FrameAt<'a>> {
        self.stop = Some(stop);
        None
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = FrameAt<'a>;

    fn next(&mut self) -> Option<FrameAt<'a>> {
        if self.stop.is_some() {
            return None;
        }
        let offset = self.pos;
        let rest = &self.buf[offset..];
        match frame::decode(rest) {
            Ok(frame) if frame.seq != self.expected_seq => {
                let damage = Damage::SeqBreak {
                    expected: self.expected_seq,
                    found: frame.seq,
                };
                self.end(Stop::Damaged { offset, damage })
            }
            Ok(frame) => {
                self.pos += frame.encoded_len();
                self.expected_seq += 1;
                Some(FrameAt { offset, frame })
            }
            Err(FrameError::Incomplete { .. }) if rest.iter().all(|&b| b == 0) => {
                self.end(Stop::Clean { offset })
            }
            Err(FrameError::EndMarker) if rest.iter().all(|&b| b == 0) => {
                self.end(Stop::Clean { offset })
            }
            Err(FrameError::EndMarker) => self.end(Stop::Damaged {
                offset,
                damage: Damage::BytesAfterEnd,
            }),
            Err(err) => self.end(Stop::Damaged {
                offset,
                damage: Damage::Frame(err),
            }),
        }
    }
}

/// The offset of the first valid frame at or after `from` whose seq could follow `after_seq`,
/// if any. Used to tell a torn tail (nothing valid follows) from damage in the middle of the log.
pub fn find_valid_frame_after(buf: &[u8], from: usize, after_seq: u64) -> Option<usize> {
    // A frame is at least FRAME_HEADER_BYTES + 1 long, which bounds how far seqs can advance.
    let max_seq_step = (buf.len().saturating_sub(from) / (FRAME_HEADER_BYTES + 1)) as u64 + 1;
    (from..buf.len()).find(|&offset| {
        let rest = &buf[offset..];
        match frame::peek_seq(rest) {
            Some(seq) if seq > after_seq && seq - after_seq <= max_seq_step => {
                frame::decode(rest).is_ok()
            }
            _ => false,
        }
    })
}

/// Whether the segment whose whole bytes (header included) are `buf` marks batches. A buffer
/// without a readable header counts as unmarked, the strict reading.
pub fn buf_marks_batches(buf: &[u8]) -> bool {
    SegmentHeader::decode(buf).is_ok_and(|header| header.marks_batches())
}

/// The offset of the first valid frame at or after `from` that starts a batch later than the
/// one holding the damage before `from`, if any; `after_seq` is the last valid seq before the
/// damage. Without batch marks (format version 1) every valid frame counts as a later batch.
///
/// This decides "torn final write" against "damage in the middle of the log": a power cut can
/// persist a batch's later pages and lose an earlier one, leaving valid frames after a hole,
/// but those frames are of the same, never-acknowledged batch. A later batch is written only
/// after the earlier one was acknowledged (under `EveryBatch`), so damage before it is real.
pub fn later_batch_after(
    buf: &[u8],
    from: usize,
    after_seq: u64,
    marks_batches: bool,
) -> Option<usize> {
    let mut from = from;
    loop {
        let offset = find_valid_frame_after(buf, from, after_seq)?;
        let Ok(found) = frame::decode(&buf[offset..]) else {
            return Some(offset); // unreachable: the search decoded it; stay strict anyway
        };
        if !marks_batches || found.batch_start {
            return Some(offset);
        }
        from = offset + found.encoded_len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first_seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            first_seq,
            created_unix_nanos: 5,
        };
        let mut buf = header.encode().to_vec();
        for (i, payload) in payloads.iter().enumerate() {
            frame::encode(&mut buf, first_seq + i as u64, 10 + i as i64, payload);
        }
        buf
    }

    #[test]
    fn names_sort_by_seq_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("00000000000000000042.seg.tmp"), None);
        assert_eq!(parse_file_name("42.seg"), None);
    }

    #[test]
    fn header_round_trips_and_rejects_future_versions() {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            first_seq: 9,
            created_unix_nanos: -3,
        };
        assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
        let future = SegmentHeader {
            version: FORMAT_VERSION + 1,
            ..header
        };
        assert_eq!(
            SegmentHeader::decode(&future.encode()),
            Err(HeaderError::UnsupportedVersion {
                found: FORMAT_VERSION + 1
            })
        );
    }

    #[test]
    fn header_errors_and_damage_say_what_is_wrong() {
        // These texts are the `reason` of the errors operators read; each variant names itself.
        assert_eq!(
            HeaderError::TooShort { len_bytes: 5 }.to_string(),
            format!("segment header truncated: 5 of {SEGMENT_HEADER_BYTES} bytes")
        );
        assert_eq!(
            HeaderError::BadMagic.to_string(),
            "not a torrent-journal segment (bad magic)"
        );
        assert_eq!(
            Damage::SeqBreak {
                expected: 4,
                found: 9
            }
            .to_string(),
            "expected seq 4, found 9"
        );
        assert_eq!(
            Damage::BytesAfterEnd.to_string(),
            "non-zero bytes after the end marker"
        );
    }

    #[test]
    fn scan_yields_frames_then_a_clean_stop() {
        let buf = segment(5, &[b"a", b"bb", b"ccc"]);
        let mut scan = Scan::new(&buf, 5);
        let seqs: Vec<u64> = scan.by_ref().map(|f| f.frame.seq).collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(scan.stop(), Some(&Stop::Clean { offset: buf.len() }));
    }

    #[test]
    fn trailing_zeros_are_a_clean_end_but_bytes_after_them_are_not() {
        let mut buf = segment(1, &[b"a"]);
        let end = buf.len();
        buf.resize(end + 100, 0);
        let mut scan = Scan::new(&buf, 1);
        assert_eq!(scan.by_ref().count(), 1);
        assert_eq!(scan.stop(), Some(&Stop::Clean { offset: end }));

        buf[end + 50] = 1;
        let mut scan = Scan::new(&buf, 1);
        assert_eq!(scan.by_ref().count(), 1);
        assert!(matches!(scan.stop(), Some(Stop::Damaged { offset, .. }) if *offset == end));
    }

    #[test]
    fn resync_finds_the_frame_after_damage() {
        let buf = segment(1, &[b"first", b"second", b"third"]);
        let second = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5;
        let mut damaged = buf.clone();
        damaged[second + FRAME_HEADER_BYTES] ^= 0x40;
        let mut scan = Scan::new(&damaged, 1);
        assert_eq!(scan.by_ref().count(), 1);
        let third = second + FRAME_HEADER_BYTES + 6;
        assert_eq!(find_valid_frame_after(&damaged, second + 1, 1), Some(third));
        assert_eq!(find_valid_frame_after(&damaged, third + 1, 1), None);
    }

    #[test]
    fn a_valid_frame_counts_only_at_a_seq_the_bytes_before_it_allow() {
        // 240 bytes searched: at most 240 / 25 frames fit, so seqs can advance by 10 at most.
        // (240 also tells 25 from 24 or 23 as the smallest frame, for mutation testing.)
        let with_frame_at_seq = |seq: u64| {
            let mut buf = vec![0xFF; 210];
            frame::encode(&mut buf, seq, 1, b"abcdef");
            assert_eq!(buf.len(), 240);
            buf
        };
        let after_seq = 100;
        assert_eq!(
            find_valid_frame_after(&with_frame_at_seq(after_seq + 10), 0, after_seq),
            Some(210)
        );
        assert_eq!(
            find_valid_frame_after(&with_frame_at_seq(after_seq + 11), 0, after_seq),
            None,
            "a frame this far ahead cannot be the journal's: not evidence of anything"
        );
        assert_eq!(
            find_valid_frame_after(&with_frame_at_seq(after_seq), 0, after_seq),
            None,
            "a seq at or before the last good one is not a later frame"
        );
    }

    /// A segment of two batches: frames 1-2, then 3-5 (first frames marked).
    fn two_batches() -> (Vec<u8>, [usize; 5]) {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            first_seq: 1,
            created_unix_nanos: 5,
        };
        let mut buf = header.encode().to_vec();
        let mut offsets = [0; 5];
        for (i, offset) in offsets.iter_mut().enumerate() {
            *offset = buf.len();
            let starts = i == 0 || i == 2;
            frame::encode_marked(&mut buf, i as u64 + 1, 10, b"payload", starts);
        }
        (buf, offsets)
    }

    #[test]
    fn only_a_marked_frame_after_damage_proves_a_later_batch() {
        let (buf, at) = two_batches();
        assert!(buf_marks_batches(&buf));
        // Damage in frame 4 (inside the final batch): frame 5 is of the same batch.
        let mut torn = buf.clone();
        torn[at[3] + FRAME_HEADER_BYTES] ^= 1;
        assert_eq!(later_batch_after(&torn, at[3] + 1, 3, true), None);
        // Without marks (version 1 rules) frame 5 counts as later.
        assert_eq!(later_batch_after(&torn, at[3] + 1, 3, false), Some(at[4]));
        // Damage in frame 2 (the first batch): frame 3 starts a later batch.
        let mut middle = buf.clone();
        middle[at[1] + FRAME_HEADER_BYTES] ^= 1;
        assert_eq!(later_batch_after(&middle, at[1] + 1, 1, true), Some(at[2]));
        // Damage in frame 3 (the final batch's first frame): frames 4 and 5 are unmarked.
        let mut first = buf.clone();
        first[at[2] + FRAME_HEADER_BYTES] ^= 1;
        assert_eq!(later_batch_after(&first, at[2] + 1, 2, true), None);
    }
}
