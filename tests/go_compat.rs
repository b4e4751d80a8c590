//! Proves that a Go program using go-i2p-bt's file and SQLite persistence and this project can
//! share data: the file projection writes `torrents/<hex>.json` byte for byte as Go writes it,
//! still reads the files it wrote before, and (when Go is installed) a real Go program reads
//! our files and database and writes rows we then read.
//!
//! How:
//! * `tests/fixtures/go/torrents/*.json` are real Go output (see the README there) for four
//!   states that `fixture_states` builds again here; the file projection, fed those states,
//!   must write exactly those bytes.
//! * `tests/fixtures/go/before-schema-5/` holds a file in the form we wrote before; a projection
//!   directory holding it must open, keep it until its torrent changes, and then rewrite it in
//!   Go's form.
//! * `tests/go/gocheck` (Go, `encoding/json`, `mattn/go-sqlite3`) is built and run on file and
//!   SQLite projections of a simulated session: it re-marshals every file the Go way and
//!   compares bytes, scans every row with the Go code's queries into `time.Time`, checks that
//!   `ORDER BY added_date` is time order, then upserts a torrent and inserts a metrics row the
//!   Go way, which the projection must read back. Without `go` on `PATH` this test passes
//!   without running, unless `TJ_REQUIRE_GO=1`, which turns the missing tool into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use torrent_journal::model::{FileInfo, InfoHash, Timestamp, TorrentState};
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, Projection, SqliteOptions, SqliteProjection,
};
use torrent_journal::simulate::Simulation;
use torrent_journal::storage::RealStorage;
use torrent_journal::{Envelope, Event};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go")
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn hash(hex: &str) -> InfoHash {
    InfoHash::parse(hex).unwrap()
}

/// The states of `fixtures()` in `tests/go/gocheck/main.go`, field for field.
fn fixture_states() -> Vec<TorrentState> {
    vec![
        TorrentState {
            id: 7,
            info_hash: hash("c12fe1c06bba254a9dc9f519b335aa7c1367a88a"),
            status: 4,
            download_dir: "/srv/<films> & \"more\"\\x".to_owned(),
            added_date: at("2024-05-01T12:00:00.25Z"),
            start_date: Some(at("2024-05-01T12:00:02Z")),
            labels: vec![
                "linux".to_owned(),
                "<b>&amp;".to_owned(),
                "ünïcödé 😀 \u{2028} \u{2029} é".to_owned(),
            ],
            downloaded: 1_000_000_000_000_000,
            uploaded: 5,
            left: 3,
            percent_done: 0.5,
            piece_count: 10,
            pieces_complete: 5,
            pieces_available: 10,
            files: vec![
                FileInfo {
                    name: "a/dir\twith tab/1.iso".to_owned(),
                    length: 100,
                    bytes_completed: 50,
                    priority: 1,
                    wanted: true,
                },
                FileInfo {
                    name: "a/日本語\nnewline.txt".to_owned(),
                    length: 1,
                    bytes_completed: 0,
                    priority: -1,
                    wanted: false,
                },
            ],
            priorities: vec![1, -1],
            wanted: vec![true, false],
            tracker_list: vec!["udp://t.example:1337/announce?a=1&b=2".to_owned()],
            seed_ratio_limit: 1.0,
            seed_idle_limit: 30,
            honors_session_limits: true,
            // Left out of the file, as Go leaves them out.
            error: Some("tracker <said> no".to_owned()),
            download_rate: 1,
            eta: 2,
            peer_count: 3,
            ..TorrentState::default()
        },
        TorrentState {
            id: 1,
            info_hash: hash("0123456789abcdef0123456789abcdef01234567"),
            status: 1,
            download_dir: "downloads".to_owned(),
            added_date: at("2024-05-01T12:00:00.000000001Z"),
            seed_ratio_limit: 1e-7,
            honors_session_limits: true,
            ..TorrentState::default()
        },
        TorrentState {
            id: i64::MAX,
            info_hash: hash("ffffffffffffffffffffffffffffffffffffffff"),
            status: 6,
            added_date: Timestamp::MAX,
            start_date: Some(Timestamp::UNIX_EPOCH),
            labels: vec![String::new()],
            downloaded: 9_007_199_254_740_993,
            left: -1,
            percent_done: 1.0,
            files: vec![FileInfo::default()],
            priorities: vec![0],
            wanted: vec![false],
            seed_ratio_limit: 1e21,
            seed_idle_limit: -1,
            ..TorrentState::default()
        },
        TorrentState {
            id: 2,
            info_hash: hash("abababababababababababababababababababab"),
            status: 0,
            download_dir: "/d".to_owned(),
            added_date: at("2023-11-14T22:13:20.1Z"),
            start_date: Some(at("2023-11-14T22:13:21.123456Z")),
            labels: vec!["x".to_owned()],
            percent_done: 0.1 + 0.2,
            seed_ratio_limit: 2.5e-8,
            ..TorrentState::default()
        },
    ]
}

fn saved(seq: u64, torrent: &TorrentState) -> Envelope {
    Envelope::new(
        seq,
        at("2024-06-01T00:00:00Z"),
        Event::TorrentSaved {
            torrent: Box::new(torrent.clone()),
        },
    )
}

fn open_files(dir: &Path) -> FileProjection {
    FileProjection::open(Arc::new(RealStorage), dir, FileProjectionOptions::default()).unwrap()
}

#[test]
fn torrent_files_are_byte_identical_to_what_go_writes() {
    let states = fixture_states();
    let fixture_files = std::fs::read_dir(fixtures().join("torrents"))
        .unwrap()
        .count();
    assert_eq!(fixture_files, states.len(), "one fixture per state");
    let dir = tempfile::tempdir().unwrap();
    let mut projection = open_files(dir.path());
    let batch: Vec<Envelope> = states
        .iter()
        .enumerate()
        .map(|(i, t)| saved(i as u64 + 1, t))
        .collect();
    projection.apply(&batch).unwrap();
    for torrent in &states {
        let name = format!("{}.json", torrent.info_hash.to_hex());
        let go = std::fs::read(fixtures().join("torrents").join(&name)).unwrap();
        let ours = std::fs::read(dir.path().join("torrents").join(&name)).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(go.clone()).unwrap(),
            "{name}"
        );
        assert_eq!(torrent.to_go_file_json_pretty().unwrap(), go, "{name}");
    }
    // Reopened (the mirror rebuilt from these files) and saved again: the same bytes.
    let mut reopened = open_files(dir.path());
    let again: Vec<Envelope> = states
        .iter()
        .enumerate()
        .map(|(i, t)| saved(states.len() as u64 + i as u64 + 1, t))
        .collect();
    reopened.apply(&again).unwrap();
    for torrent in &states {
        let name = format!("{}.json", torrent.info_hash.to_hex());
        let go = std::fs::read(fixtures().join("torrents").join(&name)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("torrents").join(&name)).unwrap(),
            go
        );
    }
}

#[test]
fn files_written_before_are_still_read_and_rewritten_in_gos_form_when_touched() {
    let old_name = "0123456789abcdef0123456789abcdef01234567.json";
    let old = std::fs::read(fixtures().join("before-schema-5").join(old_name)).unwrap();
    let state = fixture_states()[1].clone();
    // The old form decodes to the same state.
    let decoded: TorrentState = serde_json::from_slice(&old).unwrap();
    assert_eq!(decoded, state);

    // A projection directory as the previous version left it: checkpoint 1, the old file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("torrents")).unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    std::fs::write(dir.path().join("torrents").join(old_name), &old).unwrap();
    std::fs::write(
        dir.path().join("checkpoint.json"),
        "{\n  \"format\": 1,\n  \"seq\": 1,\n  \"at\": \"2024-06-01T00:00:00Z\",\n  \"shard\": false\n}\n",
    )
    .unwrap();
    let mut projection = open_files(dir.path());
    assert_eq!(projection.checkpoint().seq, 1);
    let view = projection.read_view().unwrap();
    assert_eq!(view.torrents.len(), 1);

    // Another torrent changes: the old file is left alone.
    let other = fixture_states()[0].clone();
    projection.apply(&[saved(2, &other)]).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("torrents").join(old_name)).unwrap(),
        old
    );
    // Its own torrent is saved again: now in Go's form.
    let mut projection = open_files(dir.path());
    projection.apply(&[saved(3, &state)]).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("torrents").join(old_name)).unwrap(),
        std::fs::read(fixtures().join("torrents").join(old_name)).unwrap()
    );
}

/// `go` on `PATH`, or `None` (a failure when `TJ_REQUIRE_GO=1`).
fn go_tool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("go"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("TJ_REQUIRE_GO").as_deref() == Ok("1") {
        panic!(
            "TJ_REQUIRE_GO=1 but `go` is not on PATH: install Go and mattn/go-sqlite3 \
             (Debian: apt-get install -y golang-go golang-github-mattn-go-sqlite3-dev)"
        );
    }
    found
}

#[test]
fn a_go_program_reads_our_projections_and_writes_rows_we_read() {
    let Some(go) = go_tool() else {
        eprintln!("skipped: `go` is not on PATH (set TJ_REQUIRE_GO=1 to make this a failure)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let binary = work.path().join("gocheck");
    let gopath = std::env::var_os("GOPATH").unwrap_or_else(|| "/usr/share/gocode".into());
    let build = Command::new(&go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/gocheck"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", work.path().join("gocache"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "building tests/go/gocheck failed (GOPATH={}; needs mattn/go-sqlite3 there):\n{}",
        Path::new(&gopath).display(),
        String::from_utf8_lossy(&build.stderr)
    );

    // A simulated session, plus the fixture states, into both projections.
    let start = at("2023-11-14T22:13:20Z");
    let mut events: Vec<Event> = Simulation {
        seed: 11,
        torrents: 12,
        events: 400,
        tasks: 1,
        start,
    }
    .task(0)
    .collect();
    // Not the third fixture: the Go code reads a torrent file through a
    // `map[string]interface{}`, so integers beyond 2^53 (its id is i64::MAX) come back as
    // float64 and fail (or round). Go cannot read its own file either; see docs/FORMAT.md.
    events.extend(
        fixture_states()
            .into_iter()
            .take(2)
            .map(|t| Event::TorrentSaved {
                torrent: Box::new(t),
            }),
    );
    let envelopes: Vec<Envelope> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let t = start.saturating_add_nanos(i as i64 * 250_000_000 + 7);
            Envelope::new(i as u64 + 1, t, e)
        })
        .collect();
    let files = work.path().join("files");
    let db = work.path().join("state.db");
    let mut file_projection = open_files(&files);
    file_projection.apply(&envelopes).unwrap();
    let mut sqlite = SqliteProjection::open(&db, SqliteOptions::default()).unwrap();
    sqlite.apply(&envelopes).unwrap();
    let expected = sqlite.load_state().unwrap();
    drop(sqlite);

    let run = Command::new(&binary)
        .arg("check")
        .arg(&files)
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "gocheck failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["files"], expected.torrents.len(), "{report}");
    assert_eq!(report["session"], expected.session.is_some(), "{report}");
    assert_eq!(
        report["rows"].as_array().unwrap().len(),
        expected.torrents.len()
    );
    let samples: usize = expected.metrics.values().map(Vec::len).sum();
    assert!(samples > 0);
    assert_eq!(report["metrics"], samples, "{report}");

    // What Go wrote, read back by the projection.
    let sqlite = SqliteProjection::open(&db, SqliteOptions::default()).unwrap();
    let go_hash = hash(report["wrote_torrent"].as_str().unwrap());
    let go_torrent = sqlite.load_torrent(&go_hash).unwrap().expect("Go's row");
    assert_eq!(go_torrent, fixture_states()[3]);
    let go_samples = sqlite
        .load_metrics(&go_hash, Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(go_samples.len(), 1);
    assert_eq!(go_samples[0].timestamp, at("2023-11-14T22:13:25.75Z"));
    assert_eq!(
        (go_samples[0].seeding_time, go_samples[0].downloading_time),
        (0, 0)
    );
    let all = sqlite.load_all_torrents().unwrap();
    assert_eq!(all.len(), expected.torrents.len() + 1);
    assert!(
        all.windows(2).all(|w| w[0].added_date <= w[1].added_date),
        "ORDER BY added_date over our rows and Go's is time order"
    );
    let metrics = sqlite
        .metrics_summary(Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert!(metrics.iter().any(|m| m.info_hash == go_hash));
}
