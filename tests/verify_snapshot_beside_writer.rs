//! `tj verify` beside a live writer and compaction: the journal walk ends at the head it saw,
//! and a compaction may then snapshot events written after it. Such a snapshot is judged
//! against the journal as it is when checked — not reported as "beyond the journal's last
//! event" — while a snapshot truly beyond the journal still is (the 1-in-4 false
//! `DamagedSnapshot` of the tj race soak, issue 13 §4).
//!
//! How: a journal of 12 events on `SimStorage`; a report whose walk ended at seq 8 (as if the
//! last 4 were written after it passed); snapshots at seq 12 (written after the walk, fine) and,
//! separately, at seq 13 (beyond the journal: damage).

use std::path::Path;
use std::sync::Arc;

use torrent_journal::Journal;
use torrent_journal::event::{Envelope, Event};
use torrent_journal::journal::JournalOptions;
use torrent_journal::journal::ProblemKind;
use torrent_journal::model::{InfoHash, TorrentState};
use torrent_journal::snapshot::SnapshotBody;
use torrent_journal::state::State;
use torrent_journal::storage::{SimStorage, Storage};
use torrent_journal::verify::{self, VerifyReport};

const DIR: &str = "/store";

fn journal_of_twelve(storage: &SimStorage) -> Vec<Envelope> {
    let options = JournalOptions {
        storage: Arc::new(storage.clone()),
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(DIR, options).unwrap();
    let appended = (0..12u8)
        .map(|n| {
            let event = Event::TorrentSaved {
                torrent: Box::new(TorrentState {
                    info_hash: InfoHash::V1([n; 20]),
                    ..TorrentState::default()
                }),
            };
            let receipt = journal.append(&event).unwrap();
            Envelope::new(receipt.first_seq, receipt.at, event)
        })
        .collect();
    journal.close().unwrap();
    appended
}

fn snapshot_problems(storage: &SimStorage, state: State) -> Vec<ProblemKind> {
    let body = SnapshotBody {
        state,
        tombstones: Vec::new(),
    };
    torrent_journal::testing::format::write_snapshot(storage, Path::new(DIR), &body).unwrap();
    let mut report = VerifyReport::default();
    report.extent.last_seq = Some(8);
    verify::check_snapshots(storage as &dyn Storage, Path::new(DIR), &mut report).unwrap();
    report.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn a_snapshot_of_events_written_after_the_walk_is_not_damage() {
    let storage = SimStorage::new();
    let appended = journal_of_twelve(&storage);
    let problems = snapshot_problems(&storage, State::from_envelopes(&appended));
    assert_eq!(problems, Vec::new());
}

#[test]
fn a_snapshot_beyond_the_journal_as_it_is_now_is_damage() {
    let storage = SimStorage::new();
    let appended = journal_of_twelve(&storage);
    let mut state = State::from_envelopes(&appended);
    state.last_seq = 13;
    let problems = snapshot_problems(&storage, state);
    assert_eq!(problems, vec![ProblemKind::DamagedSnapshot]);
}
