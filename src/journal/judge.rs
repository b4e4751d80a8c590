//! Owns the one judgement of the torn-tail rule: where a scan of a segment stopped on bytes that
//! are not the next frame, is that damage, a torn final write, acknowledged events lost, or —
//! beside a live writer — a write still in progress? Recovery, readers, the archive reader, the
//! follower and `tj verify` ask it, each stating its policy in a [`Place`]; each turns the
//! [`Verdict`] into its own action (cut, stop, wait, report). See `docs/FORMAT.md`, "Recovery".

use super::segment::{self, Damage};

/// Where the damaged bytes sit, and what the asker knows about the writer: its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A segment with a later one after it: sealed and immutable, so damage there is damage.
    Sealed,
    /// The journal's last segment, where a crash can leave a torn final write.
    Last {
        /// The durable position read before the bytes (`None`: no writer ever published one).
        /// Every event up to it was acknowledged, so damage it covers is never a torn write.
        durable_seq: Option<u64>,
        /// Whether a writer may be appending while the bytes are read (readers and the
        /// follower), or not (recovery holds the writer's lock; verify re-reads on its own).
        live_writer: bool,
    },
}

impl Place {
    /// The place of a segment: [`Place::Last`] with the durable position and the writer's
    /// liveness when `is_last`, else [`Place::Sealed`].
    pub(crate) fn of(is_last: bool, durable_seq: Option<u64>, live_writer: bool) -> Place {
        if is_last {
            Place::Last {
                durable_seq,
                live_writer,
            }
        } else {
            Place::Sealed
        }
    }

    /// The durable position this place knows (0 when none).
    pub(crate) fn durable_seq_or_zero(self) -> u64 {
        match self {
            Place::Last { durable_seq, .. } => durable_seq.unwrap_or(0),
            Place::Sealed => 0,
        }
    }
}

/// What bytes that are not the next frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Damage in the log: an error (or problem) naming segment, offset and seq.
    Damage,
    /// Shaped like a torn final write, but the durable position says the events there were
    /// acknowledged: they are missing or damaged, an error.
    LostAcknowledged,
    /// A torn final write past the durable position, never acknowledged: recovery cuts it
    /// (keeping the bytes in `.broken`), readers end before it.
    TornTail,
    /// A later batch follows, past the durable position, and a writer may be overwriting the
    /// segment's preallocated zeros right now (a read racing that copy can see a later page
    /// before an earlier one): not damage yet. Readers stop or wait; nobody cuts.
    InProgress,
}

/// Judges the damage at `offset` of `buf` (a segment's bytes, or a chunk read at a cursor),
/// found where the scan expected seq `after_seq + 1`; `marks_batches` is the segment format's
/// (version 2 marks each batch's first frame).
///
/// A checksummed frame with the wrong seq is never a torn write (a torn write leaves bytes that
/// fail their checksum). Otherwise the question is whether a later batch follows
/// ([`segment::later_batch_after`]): a later batch is written only after the damaged one was
/// acknowledged, so damage before it is real — unless a live writer may still be writing both.
pub(crate) fn judge(
    buf: &[u8],
    offset: usize,
    damage: &Damage,
    after_seq: u64,
    marks_batches: bool,
    place: Place,
) -> Verdict {
    let Place::Last {
        durable_seq,
        live_writer,
    } = place
    else {
        return Verdict::Damage;
    };
    if matches!(damage, Damage::SeqBreak { .. }) {
        return Verdict::Damage;
    }
    let covered = durable_seq.is_some_and(|durable| durable > after_seq);
    // The frame at `offset` is invalid (a seq break, the one damage at a valid frame, returned
    // above), so the search starts after it; from `offset` or `offset - 1` it finds the same,
    // which makes cargo-mutants' `offset - 1` and `offset * 1` equivalent mutants (the only two
    // of this function's nine it does not catch: `--lib` run, 6 caught, 1 unviable).
    let later = segment::later_batch_after(buf, offset + 1, after_seq, marks_batches).is_some();
    match (later, covered) {
        (false, false) => Verdict::TornTail,
        (false, true) => Verdict::LostAcknowledged,
        (true, false) if live_writer && durable_seq.is_some() => Verdict::InProgress,
        (true, _) => Verdict::Damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::frame;
    use crate::journal::segment::SEGMENT_HEADER_BYTES;

    /// Four one-frame batches (seqs 1..=4, each marked), the third damaged by a flipped byte.
    fn damaged_third() -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut offsets = Vec::new();
        for seq in 1..=4 {
            offsets.push(buf.len());
            frame::encode_marked(&mut buf, seq, 0, b"payload", true);
        }
        let third = offsets[2];
        buf[third + frame::FRAME_HEADER_BYTES] ^= 0xff;
        (buf, third)
    }

    fn corrupt() -> Damage {
        Damage::Frame(frame::FrameError::ChecksumMismatch {
            expected: 0,
            got: 1,
        })
    }

    fn last(durable_seq: Option<u64>, live_writer: bool) -> Place {
        Place::Last {
            durable_seq,
            live_writer,
        }
    }

    #[test]
    fn every_policy_and_durable_position_gives_its_verdict() {
        let (buf, third) = damaged_third();
        // Damage before a later batch (seq 4 follows).
        let mid = |place| judge(&buf, third, &corrupt(), 2, true, place);
        assert_eq!(mid(Place::Sealed), Verdict::Damage);
        assert_eq!(mid(last(None, false)), Verdict::Damage);
        assert_eq!(mid(last(None, true)), Verdict::Damage);
        assert_eq!(mid(last(Some(2), false)), Verdict::Damage);
        assert_eq!(mid(last(Some(2), true)), Verdict::InProgress);
        assert_eq!(mid(last(Some(3), true)), Verdict::Damage);

        // The same damage with nothing after it: the final batch, torn.
        let (mut buf, third) = damaged_third();
        buf.truncate(third + 10);
        let tail = |place| judge(&buf, third, &corrupt(), 2, true, place);
        assert_eq!(tail(Place::Sealed), Verdict::Damage);
        assert_eq!(tail(last(None, false)), Verdict::TornTail);
        assert_eq!(tail(last(Some(2), true)), Verdict::TornTail);
        assert_eq!(tail(last(Some(3), false)), Verdict::LostAcknowledged);
        assert_eq!(tail(last(Some(9), true)), Verdict::LostAcknowledged);
    }

    #[test]
    fn a_checksummed_frame_with_the_wrong_seq_is_always_damage() {
        let (mut buf, third) = damaged_third();
        buf.truncate(third);
        let step = Damage::SeqBreak {
            expected: 3,
            found: 7,
        };
        for place in [Place::Sealed, last(None, false), last(Some(1), true)] {
            assert_eq!(judge(&buf, third, &step, 2, true, place), Verdict::Damage);
        }
    }
}
