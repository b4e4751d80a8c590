//! Proves recovery's decision table (docs/FORMAT.md, "Recovery") exhaustively for a power cut
//! that tears a write batch at page granularity: every subset of a batch's 4 KiB pages reaching
//! the disk (a lost page reads back as the zeros the writer preallocated), × the durable
//! position (missing, stale, before the torn batch, covering it) × which batch is torn (the
//! final one, or the one before it with the final batch intact) × segment format (1 without
//! batch marks, 2 with them).
//!
//! The rules checked, case by case, on simulated storage:
//! - a torn *final* batch in a format 2 segment is a torn tail whenever the durable position does
//!   not cover it: the open succeeds, keeps exactly the batch's frames before the first damaged
//!   one, saves the cut bytes in `.broken`, and appends continue gap-free; `tj verify` beforehand
//!   reports at most a `torn-tail` (no damage);
//! - the same image in a format 1 segment (no marks) is refused when a valid frame survives
//!   after the hole (version 1 cannot tell it from mid-log damage), as before;
//! - damage covered by the durable position is always refused, naming segment, offset and seq;
//! - damage in the batch before the final one (a later batch follows) is always refused;
//! - a refused open changes no byte.
//!
//! And the snapshot axis, at the store level: the same torn final batch (every page subset,
//! durable position missing or before it) in a store that was never compacted, one compacted
//! twice (snapshots hold the early events, their segments are gone), and one whose newest
//! snapshot is also damaged: the open succeeds and the state at the head equals the reducer's
//! fold of exactly the events kept (from an uncompacted, untorn twin of the store).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use torrent_journal::compaction::{self, CompactOptions};
use torrent_journal::event::Event;
use torrent_journal::history::{self, Target};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::Timestamp;
use torrent_journal::state::{self, State};
use torrent_journal::storage::CrashFill;
use torrent_journal::storage::{SimStorage, Storage};
use torrent_journal::testing::format::durable::{self, DurablePosition};
use torrent_journal::{Error, Journal};

use common::{SIM_DIR, clock, frame_starts, read_seqs, torrent_event};

const PAGE_BYTES: usize = 4096;
/// Batches written (events of ~1 KB): three, five, then a final batch of fourteen (4+ pages).
const BATCH_EVENTS: [u64; 3] = [3, 5, 14];
/// The zeros the writer keeps ahead of its data (its preallocation), in the crash image.
const PADDING_BYTES: usize = 16 * 1024;

/// Where the journal sits before any tearing: the segment's bytes and the batches' frames.
struct Written {
    segment: PathBuf,
    bytes: Vec<u8>,
    /// Per batch: (first seq, frame start offsets, end offset).
    batches: Vec<(u64, Vec<usize>, usize)>,
}

fn options(storage: &SimStorage, version: u8) -> JournalOptions {
    JournalOptions {
        storage: Arc::new(storage.clone()),
        clock: clock(),
        format_version: version,
        ..JournalOptions::default()
    }
}

fn write(version: u8) -> Written {
    let storage = SimStorage::new();
    let journal = Journal::open_with(SIM_DIR, options(&storage, version)).unwrap();
    let mut n = 0;
    for count in BATCH_EVENTS {
        let events: Vec<Event> = (0..count).map(|i| torrent_event(n + i)).collect();
        journal.append_all(&events).unwrap();
        n += count;
    }
    journal.close().unwrap();
    let segment = common::segments(&storage).pop().unwrap();
    let bytes = storage.file_bytes(&segment).unwrap();
    let starts = frame_starts(&bytes);
    let mut batches = Vec::new();
    let mut index = 0;
    for count in BATCH_EVENTS {
        let count = count as usize;
        let frames = starts[index..index + count].to_vec();
        batches.push((index as u64 + 1, frames, starts[index + count]));
        index += count;
    }
    Written {
        segment,
        bytes,
        batches,
    }
}

/// The pages (by index) that hold bytes of the batch spanning `start..end`.
fn pages(start: usize, end: usize) -> Vec<usize> {
    (start / PAGE_BYTES..=(end - 1) / PAGE_BYTES).collect()
}

/// The crash image: the batch's bytes on lost pages are zeros, padding follows the data.
fn torn_image(written: &Written, batch: usize, lost_pages: &[usize]) -> Vec<u8> {
    let (_, frames, end) = &written.batches[batch];
    tear(&written.bytes, frames[0], *end, lost_pages)
}

/// `bytes` with the part of `start..end` on each lost page zeroed, then the writer's padding.
fn tear(bytes: &[u8], start: usize, end: usize, lost_pages: &[usize]) -> Vec<u8> {
    let mut image = bytes.to_vec();
    for &page in lost_pages {
        let from = (page * PAGE_BYTES).max(start);
        let to = ((page + 1) * PAGE_BYTES).min(end);
        image[from..to].fill(0);
    }
    image.resize(image.len() + PADDING_BYTES, 0);
    image
}

/// How many of the batch's frames survive whole before the first one the tearing changed.
fn intact_frames(written: &Written, image: &[u8], batch: usize) -> usize {
    let (_, frames, end) = &written.batches[batch];
    intact(&written.bytes, image, frames, *end)
}

/// How many frames (starting at `frames`, the last ending at `end`) `image` holds unchanged
/// from `bytes`, before the first changed one.
fn intact(bytes: &[u8], image: &[u8], frames: &[usize], end: usize) -> usize {
    let mut bounds = frames.to_vec();
    bounds.push(end);
    bounds
        .windows(2)
        .take_while(|w| image[w[0]..w[1]] == bytes[w[0]..w[1]])
        .count()
}

#[derive(Debug, Clone, Copy)]
enum DurableAxis {
    Missing,
    /// Older than the journal: a power cut kept an old copy (the file is not fsynced).
    Stale,
    BeforeTornBatch,
    CoversTornBatch,
}

const DURABLE: [DurableAxis; 4] = [
    DurableAxis::Missing,
    DurableAxis::Stale,
    DurableAxis::BeforeTornBatch,
    DurableAxis::CoversTornBatch,
];

fn durable_seq(axis: DurableAxis, written: &Written, batch: usize) -> Option<u64> {
    let (first, frames, _) = &written.batches[batch];
    match axis {
        DurableAxis::Missing => None,
        DurableAxis::Stale => Some(1),
        DurableAxis::BeforeTornBatch => Some(first - 1),
        DurableAxis::CoversTornBatch => Some(first + frames.len() as u64 - 1),
    }
}

/// A fresh simulated store holding `image` as its only segment and the durable position.
fn store_with(written: &Written, image: &[u8], durable: Option<u64>) -> SimStorage {
    let storage = SimStorage::new();
    storage
        .create_dir_all(written.segment.parent().unwrap())
        .unwrap();
    storage.put_file(&written.segment, image.to_vec());
    if let Some(seq) = durable {
        let position = DurablePosition {
            seq,
            at: Timestamp::from_unix_nanos(1),
        };
        let path = durable::path(Path::new(SIM_DIR).join("journal").as_path());
        storage.put_file(&path, durable::encode(position).to_vec());
    }
    storage
}

/// Every subset of `pages` that loses at least one page.
fn lossy_subsets(pages: &[usize]) -> Vec<Vec<usize>> {
    (1..1u32 << pages.len())
        .map(|mask| {
            (0..pages.len())
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| pages[bit])
                .collect()
        })
        .collect()
}

/// What the open must do with one image.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Opens with events 1..=last_seq.
    Opens { last_seq: u64 },
    /// Refuses (damage).
    Refuses,
}

fn expected(
    written: &Written,
    image: &[u8],
    batch: usize,
    durable: Option<u64>,
    version: u8,
) -> Expected {
    let (first, frames, end) = &written.batches[batch];
    let intact = intact_frames(written, image, batch);
    if intact == frames.len() {
        return Expected::Opens {
            last_seq: written
                .batches
                .last()
                .map(|(f, fr, _)| f + fr.len() as u64 - 1)
                .unwrap(),
        };
    }
    let first_damaged = first + intact as u64;
    if durable.is_some_and(|d| d >= first_damaged) || batch + 1 < written.batches.len() {
        return Expected::Refuses;
    }
    // A frame of the torn batch that survived whole after the hole.
    let mut bounds = frames.clone();
    bounds.push(*end);
    let valid_after = bounds[intact + 1..]
        .windows(2)
        .any(|w| image[w[0]..w[1]] == written.bytes[w[0]..w[1]]);
    if version == 1 && valid_after {
        return Expected::Refuses;
    }
    Expected::Opens {
        last_seq: first_damaged - 1,
    }
}

struct Tally {
    cases: usize,
    opened: usize,
    refused: usize,
}

fn run_case(
    written: &Written,
    image: &[u8],
    batch: usize,
    axis: DurableAxis,
    version: u8,
    tally: &mut Tally,
) {
    let durable = durable_seq(axis, written, batch);
    let want = expected(written, image, batch, durable, version);
    let storage = store_with(written, image, durable);
    let label = format!("v{version} batch {batch} durable {axis:?}: {want:?}");
    let report = torrent_journal::verify(&storage, Path::new(SIM_DIR)).unwrap();
    let opened = Journal::open_with(SIM_DIR, options(&storage, version));
    tally.cases += 1;
    match want {
        Expected::Refuses => {
            tally.refused += 1;
            let err = opened.err().unwrap_or_else(|| panic!("{label}: opened"));
            assert_damage_named(&err, &written.segment, &label);
            assert!(report.has_damage(), "{label}: verify saw no damage");
            assert_eq!(
                storage.file_bytes(&written.segment).unwrap(),
                image,
                "{label}: bytes changed"
            );
        }
        Expected::Opens { last_seq } => {
            tally.opened += 1;
            assert!(
                !report.has_damage(),
                "{label}: verify reported {:?}",
                report.problems
            );
            let journal = opened.unwrap_or_else(|e| panic!("{label}: {e}"));
            let receipt = journal.append(&torrent_event(99)).unwrap();
            assert_eq!(receipt.first_seq, last_seq + 1, "{label}");
            journal.close().unwrap();
            let seqs = read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR));
            assert_eq!(seqs, (1..=last_seq + 1).collect::<Vec<_>>(), "{label}");
            let report = torrent_journal::verify(&storage, Path::new(SIM_DIR)).unwrap();
            assert!(
                report.is_clean(),
                "{label}: after reopening {:?}",
                report.problems
            );
            // Non-zero bytes past the kept frames are a torn tail: cut and kept in `.broken`.
            let cut_anything = image[written_end_of(written, last_seq)..]
                .iter()
                .any(|&b| b != 0);
            let broken = PathBuf::from(format!("{}.broken", written.segment.display()));
            assert_eq!(
                storage.exists(&broken),
                cut_anything,
                "{label}: .broken kept iff bytes were cut"
            );
        }
    }
}

/// The offset where the frame after `last_seq` starts (the cut point).
fn written_end_of(written: &Written, last_seq: u64) -> usize {
    let starts = frame_starts(&written.bytes);
    starts[last_seq as usize]
}

fn assert_damage_named(err: &Error, segment: &Path, label: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&segment.display().to_string()),
        "{label}: {text}"
    );
    let named = match err {
        Error::ChecksumMismatch { seq, .. } | Error::Corrupt { seq, .. } => seq.is_some(),
        Error::SequenceBreak { .. } => true,
        _ => false,
    };
    assert!(named, "{label}: not a damage error naming a seq: {err:?}");
}

#[test]
fn every_page_subset_of_a_torn_batch_against_every_durable_position() {
    let mut tally = Tally {
        cases: 0,
        opened: 0,
        refused: 0,
    };
    for version in [1, 2] {
        let written = write(version);
        for batch in [1, 2] {
            let (_, frames, end) = &written.batches[batch];
            let batch_pages = pages(frames[0], *end);
            assert!(
                batch_pages.len() >= 2,
                "the batch spans pages: {batch_pages:?}"
            );
            for lost in lossy_subsets(&batch_pages) {
                let image = torn_image(&written, batch, &lost);
                for axis in DURABLE {
                    run_case(&written, &image, batch, axis, version, &mut tally);
                }
            }
        }
    }
    // Both outcomes occur, for both formats (the table is not vacuous).
    assert!(
        tally.opened > 0 && tally.refused > 0,
        "{} cases",
        tally.cases
    );
    eprintln!(
        "{} cases: {} opened (torn tail cut), {} refused",
        tally.cases, tally.opened, tally.refused
    );
}

#[test]
fn a_format_2_torn_final_batch_with_frames_after_the_hole_opens() {
    // The case the power-cut simulation found: the batch's first page lost, the next kept.
    let written = write(2);
    let (first, frames, end) = &written.batches[2];
    let batch_pages = pages(frames[0], *end);
    let image = torn_image(&written, 2, &batch_pages[..1]);
    let storage = store_with(&written, &image, Some(first - 1));
    let journal = Journal::open_with(SIM_DIR, options(&storage, 2)).unwrap();
    assert_eq!(journal.append(&torrent_event(7)).unwrap().first_seq, *first);
    journal.close().unwrap();
    // The same image under format 1 rules is refused: version 1 cannot tell.
    let written_v1 = write(1);
    let image_v1 = torn_image(&written_v1, 2, &batch_pages[..1]);
    let storage = store_with(&written_v1, &image_v1, Some(first - 1));
    assert!(Journal::open_with(SIM_DIR, options(&storage, 1)).is_err());
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SnapshotAxis {
    /// Never compacted: the journal starts at seq 1.
    None,
    /// Compacted twice: the early segments are gone, snapshots hold their events.
    Compacted,
    /// Compacted twice, and a bit of the newest snapshot flipped.
    NewestDamaged,
}

/// Events (~1 KB) appended one per batch before (and between) compactions.
const EARLY_EVENTS: u64 = 40;

/// Writes the store of one snapshot axis: early events (compacted as the axis says), then the
/// batches of [`BATCH_EVENTS`]. Returns the storage and the last segment's path.
fn write_store(axis: SnapshotAxis) -> (SimStorage, PathBuf) {
    let storage = SimStorage::new();
    let clock = clock();
    let open = || {
        let options = JournalOptions {
            storage: Arc::new(storage.clone()),
            clock: clock.clone(),
            segment_size_bytes: 4096,
            ..JournalOptions::default()
        };
        Journal::open_with(SIM_DIR, options).unwrap()
    };
    let compact = || {
        if axis != SnapshotAxis::None {
            let options = CompactOptions::default();
            compaction::compact(Arc::new(storage.clone()), SIM_DIR, &options).unwrap();
        }
    };
    for round in 0..2 {
        let journal = open();
        for n in 0..EARLY_EVENTS / 2 {
            clock.advance(std::time::Duration::from_secs(1));
            journal
                .append(&torrent_event(1000 + round * 100 + n))
                .unwrap();
        }
        journal.close().unwrap();
        compact();
    }
    let journal = open();
    let mut n = 0;
    for count in BATCH_EVENTS {
        clock.advance(std::time::Duration::from_secs(1));
        let events: Vec<Event> = (0..count).map(|i| torrent_event(n + i)).collect();
        journal.append_all(&events).unwrap();
        n += count;
    }
    journal.close().unwrap();
    if axis == SnapshotAxis::NewestDamaged {
        let newest = storage
            .list_dir(&Path::new(SIM_DIR).join("snapshots"))
            .unwrap()
            .into_iter()
            .filter(|name| name.ends_with(".snap"))
            .max()
            .unwrap();
        let path = Path::new(SIM_DIR).join("snapshots").join(newest);
        let mut bytes = storage.file_bytes(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x08;
        storage.put_file(&path, bytes);
    }
    let last = common::segments(&storage).pop().unwrap();
    (storage, last)
}

/// The reducer's state after seq `last_seq` of the uncompacted, untorn twin store.
fn reference_state(twin: &SimStorage, last_seq: u64) -> State {
    let reader =
        torrent_journal::JournalReader::with_storage(Arc::new(twin.clone()), SIM_DIR).unwrap();
    let mut state = State::default();
    for envelope in reader.events(1).unwrap() {
        let envelope = envelope.unwrap();
        if envelope.seq > last_seq {
            break;
        }
        state::apply(&mut state, &envelope);
    }
    state
}

#[test]
fn a_torn_final_batch_opens_to_the_reducers_state_whatever_the_snapshots() {
    let (twin, _) = write_store(SnapshotAxis::None);
    let mut cases = 0;
    let mut newest_used = None;
    for axis in [
        SnapshotAxis::None,
        SnapshotAxis::Compacted,
        SnapshotAxis::NewestDamaged,
    ] {
        let (store, last_segment) = write_store(axis);
        let bytes = store.file_bytes(&last_segment).unwrap();
        let starts = frame_starts(&bytes);
        let final_count = *BATCH_EVENTS.last().unwrap() as usize;
        let frames = starts[starts.len() - 1 - final_count..starts.len() - 1].to_vec();
        let end = *starts.last().unwrap();
        let head = torrent_journal::JournalReader::with_storage(Arc::new(store.clone()), SIM_DIR)
            .unwrap()
            .head()
            .unwrap()
            .unwrap()
            .0;
        let first_of_batch = head - final_count as u64 + 1;
        if axis != SnapshotAxis::None {
            assert!(
                common::segments(&store).len() < common::segments(&twin).len(),
                "{axis:?}: compacted"
            );
        }
        for lost in lossy_subsets(&pages(frames[0], end)) {
            let image = tear(&bytes, frames[0], end, &lost);
            let intact = intact(&bytes, &image, &frames, end);
            let last_seq = first_of_batch - 1 + intact as u64;
            for durable in [None, Some(first_of_batch - 1)] {
                cases += 1;
                let label = format!("{axis:?} lost pages {lost:?} durable {durable:?}");
                let storage = store.crash(CrashFill::Drop);
                storage.put_file(&last_segment, image.clone());
                let durable_path = durable::path(&Path::new(SIM_DIR).join("journal"));
                match durable {
                    Some(seq) => {
                        let at = Timestamp::from_unix_nanos(1);
                        storage.put_file(
                            &durable_path,
                            durable::encode(DurablePosition { seq, at }).to_vec(),
                        );
                    }
                    None => {
                        let _ = storage.remove_file(&durable_path);
                    }
                }
                let journal = Journal::open_with(SIM_DIR, options(&storage, 2))
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                journal.close().unwrap();
                let at_head = history::state_at(Arc::new(storage.clone()), SIM_DIR, Target::Head)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(at_head.seq, last_seq, "{label}");
                match axis {
                    SnapshotAxis::None => assert_eq!(at_head.snapshot, None, "{label}"),
                    SnapshotAxis::Compacted => newest_used = at_head.snapshot,
                    SnapshotAxis::NewestDamaged => assert!(
                        at_head.snapshot.is_some() && at_head.snapshot < newest_used,
                        "{label}: fell back to the previous snapshot ({:?} < {newest_used:?})",
                        at_head.snapshot
                    ),
                }
                assert!(
                    at_head.state == reference_state(&twin, last_seq),
                    "{label}: state differs"
                );
            }
        }
    }
    assert!(cases >= 3 * 2 * 7, "{cases} cases");
    eprintln!("snapshot axis: {cases} cases, every one opened to the reducer's state");
}
