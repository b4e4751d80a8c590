//! A read that has started is not cut short by a compaction: `JournalReader::frames` opens the
//! segments it will read (a bounded window ahead) when the iteration starts, and an opened
//! segment stays readable after compaction removes its file — so `tj tail` and every reader
//! deliver each event from where they started, gap-free, while compaction runs beside them
//! (issue 13 §4: no false "seq N is not retained" for a read already under way).
//!
//! How: a journal of many small segments (real files, then `SimStorage`, whose read handles
//! keep a removed file's contents as POSIX descriptors do); an iteration from seq 1 reads one
//! event, then a compaction to the head removes every segment the previous snapshot (taken
//! halfway through the writes) covers; the iteration must still yield every seq to the head,
//! each equal to what was appended, and a read starting afterwards is told where the journal
//! now starts.

use std::path::Path;
use std::sync::Arc;

use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::{Envelope, Event};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{InfoHash, TorrentState};
use torrent_journal::storage::{RealStorage, SimStorage, Storage};
use torrent_journal::{Journal, JournalReader};

const SEGMENT_BYTES: u64 = 4096;
const EVENTS: u8 = 120;

fn events() -> Vec<Event> {
    (0..EVENTS)
        .map(|n| Event::TorrentSaved {
            torrent: Box::new(TorrentState {
                info_hash: InfoHash::V1([n % 7; 20]),
                download_dir: format!("/downloads/{n}/{}", "x".repeat(200)),
                downloaded: i64::from(n) * 1000,
                ..TorrentState::default()
            }),
        })
        .collect()
}

/// Appends the events (one per batch), compacting once halfway, and returns them as committed.
fn write(storage: &Arc<dyn Storage>, dir: &Path) -> Vec<Envelope> {
    let options = JournalOptions {
        storage: Arc::clone(storage),
        segment_size_bytes: SEGMENT_BYTES,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options).unwrap();
    let mut appended = Vec::new();
    for (n, event) in events().into_iter().enumerate() {
        if n == usize::from(EVENTS / 2) {
            // Two generations: this compaction removes nothing; it makes the next one remove
            // every segment it covers.
            assert_eq!(compact_to_head(storage, dir), 0);
        }
        let receipt = journal.append(&event).unwrap();
        appended.push(Envelope::new(receipt.first_seq, receipt.at, event));
    }
    journal.close().unwrap();
    appended
}

fn compact_to_head(storage: &Arc<dyn Storage>, dir: &Path) -> usize {
    let options = CompactOptions {
        retain: Retention::Events(0),
        ..CompactOptions::default()
    };
    compaction::compact(Arc::clone(storage), dir, &options)
        .unwrap()
        .segments_removed
        .len()
}

fn read_across_compaction(storage: Arc<dyn Storage>, dir: &Path) {
    let appended = write(&storage, dir);
    let reader = JournalReader::with_storage(Arc::clone(&storage), dir).unwrap();
    let segments_before = reader.segments().unwrap().len();
    assert!(segments_before > 10, "{segments_before} segments");

    let mut events = reader.events(1).unwrap();
    let first = events.next().unwrap().unwrap();
    let removed = compact_to_head(&storage, dir);
    let first_retained = reader.first_retained_seq().unwrap();
    assert!(
        removed >= 5 && first_retained > u64::from(EVENTS / 3),
        "compaction removed {removed} of {segments_before} segments; journal starts at seq {first_retained}"
    );

    let mut read = vec![first];
    read.extend(events.map(Result::unwrap));
    assert_eq!(
        read, appended,
        "the read started before the compaction delivers every event"
    );
    // A read starting now is told where the journal starts instead.
    let err = reader.events(1).err().unwrap();
    assert!(
        matches!(err, torrent_journal::Error::SeqNotRetained { requested: 1, earliest } if earliest == first_retained),
        "{err:?}"
    );
}

#[test]
fn a_read_under_way_survives_compaction_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    read_across_compaction(Arc::new(RealStorage), &tmp.path().join("store"));
}

#[test]
fn a_read_under_way_survives_compaction_on_simulated_storage() {
    read_across_compaction(Arc::new(SimStorage::new()), Path::new("/store"));
}
