//! Proves the one-reducer rule: for random event sequences split into random batches, the
//! memory, file and SQLite projections all equal folding the events through `state::apply`; and
//! catching up incrementally — reopening each projection at every batch boundary — ends exactly
//! where applying everything at once does, and so does installing the reducer's state (the
//! snapshot path). proptest generates the events from a small set of
//! info hashes so that events collide on the same torrents.

mod common;

use std::sync::Arc;

use common::generators::{arb_event, envelopes};
use proptest::prelude::*;
use torrent_journal::event::Envelope;
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, FileView, MemoryProjection, Projection, SqliteOptions,
    SqliteProjection,
};
use torrent_journal::state::State;
use torrent_journal::storage::SimStorage;

/// How many info hashes the generated events share.
const HASHES: u8 = 4;

/// Splits `envelopes` at the given cut points (sorted, deduplicated, in range).
fn batches(envelopes: &[Envelope], mut cuts: Vec<usize>) -> Vec<&[Envelope]> {
    cuts.retain(|&c| c > 0 && c < envelopes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([envelopes.len()]) {
        out.push(&envelopes[start..cut]);
        start = cut;
    }
    out
}

struct Projections {
    _tmp: tempfile::TempDir,
    sim: SimStorage,
}

impl Projections {
    fn new() -> Self {
        let sim = SimStorage::new();
        Self {
            _tmp: tempfile::tempdir().unwrap(),
            sim,
        }
    }

    fn sqlite(&self) -> SqliteProjection {
        SqliteProjection::open(self._tmp.path().join("p.db"), SqliteOptions::default()).unwrap()
    }

    fn files(&self) -> FileProjection {
        FileProjection::open(
            Arc::new(self.sim.clone()),
            "/files",
            FileProjectionOptions::default(),
        )
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_projection_equals_the_reducer(
        events in prop::collection::vec(arb_event(HASHES), 1..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
    ) {
        let envelopes = envelopes(events);
        let expected = State::from_envelopes(&envelopes);
        let expected_files = FileView::of_state(&expected).unwrap();

        // All at once.
        let once = Projections::new();
        let mut memory = MemoryProjection::new();
        memory.apply(&envelopes).unwrap();
        let (mut sqlite, mut files) = (once.sqlite(), once.files());
        sqlite.apply(&envelopes).unwrap();
        files.apply(&envelopes).unwrap();
        prop_assert_eq!(memory.state(), &expected);
        for (hash, torrent) in &expected.torrents {
            let found = memory.get(hash);
            prop_assert_eq!(found.as_ref(), Some(torrent));
        }
        prop_assert_eq!(memory.all().len(), expected.torrents.len());
        prop_assert_eq!(&sqlite.load_state().unwrap(), &expected);
        prop_assert_eq!(&files.read_view().unwrap(), &expected_files);

        // Incrementally, reopening every projection at each batch boundary.
        let incremental = Projections::new();
        let mut memory = MemoryProjection::new();
        for batch in batches(&envelopes, cuts) {
            memory.apply(batch).unwrap();
            incremental.sqlite().apply(batch).unwrap();
            incremental.files().apply(batch).unwrap();
        }
        prop_assert_eq!(memory.state(), &expected);
        prop_assert_eq!(incremental.sqlite().dump_tables().unwrap(), sqlite.dump_tables().unwrap());
        prop_assert_eq!(incremental.files().tree_listing().unwrap(), files.tree_listing().unwrap());
        prop_assert_eq!(incremental.sqlite().checkpoint(), memory.checkpoint());
        prop_assert_eq!(incremental.files().checkpoint(), memory.checkpoint());

        // Installing the reducer's state (as from a snapshot) gives the same views.
        let installed = Projections::new();
        let (mut sqlite, mut files) = (installed.sqlite(), installed.files());
        sqlite.install(&expected).unwrap();
        files.install(&expected).unwrap();
        let mut memory = MemoryProjection::new();
        memory.install(&expected).unwrap();
        prop_assert_eq!(memory.state(), &expected);
        prop_assert_eq!(&installed.sqlite().load_state().unwrap(), &expected);
        prop_assert_eq!(&installed.files().read_view().unwrap(), &expected_files);
        prop_assert_eq!(installed.files().checkpoint(), memory.checkpoint());
    }
}
