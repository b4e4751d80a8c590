//! Proves I/O failures never lose an acknowledged event: a failed `fdatasync` or `write` (EIO or
//! ENOSPC) fails its append and poisons the writer until reopened; after a reopen, every
//! acknowledged seq is readable, seqs stay gap-free, and appends continue. A power cut at every
//! single I/O point of a small workload (with every crash fill) recovers a gap-free prefix that
//! holds every acknowledged event. Runs on `SimStorage`, which injects the faults and crashes.
//!
//! The rule for a failed batch: it was *not* acknowledged, but its bytes may have been written
//! before the failing `fdatasync`, so after a reopen the journal may or may not contain it. What
//! is guaranteed is that every *acknowledged* event is present, and seqs have no gaps.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use torrent_journal::storage::{CrashFill, Fault, FaultKind, OpKind, SimStorage};
use torrent_journal::{Durability, Error, Journal, JournalOptions, JournalReader};

const SEGMENT_BYTES: u64 = 300;

fn open(storage: &SimStorage) -> torrent_journal::Result<Journal> {
    Journal::open_with(SIM_DIR, sim_options(storage, SEGMENT_BYTES))
}

fn seqs_of(storage: &SimStorage) -> Vec<u64> {
    read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR))
}

/// Checks the journal on `storage` is a gap-free 1..=m holding every acknowledged seq; returns
/// m, or what is wrong.
fn check_holds_acked(storage: &SimStorage, acked: &[u64]) -> Result<u64, String> {
    let reader = JournalReader::with_storage(Arc::new(storage.clone()), SIM_DIR)
        .map_err(|e| format!("no journal: {e}"))?;
    let mut seqs = Vec::new();
    for envelope in reader.events(1).map_err(|e| format!("read failed: {e}"))? {
        seqs.push(envelope.map_err(|e| format!("read failed: {e}"))?.seq);
    }
    let m = seqs.len() as u64;
    if seqs != (1..=m).collect::<Vec<_>>() {
        return Err(format!("seqs are not a gap-free 1..={m}: {seqs:?}"));
    }
    match acked.iter().copied().max() {
        Some(max_acked) if max_acked > m => Err(format!(
            "recovered 1..={m} but seq {max_acked} was acknowledged"
        )),
        _ => Ok(m),
    }
}

fn assert_holds_acked(storage: &SimStorage, acked: &[u64], what: &str) -> u64 {
    check_holds_acked(storage, acked).unwrap_or_else(|problem| panic!("{what}: {problem}"))
}

/// Panics listing every failure found by a sweep (up to 20 of them).
fn assert_no_failures(failures: &[String], tried: usize, what: &str) {
    let shown: Vec<&str> = failures.iter().take(20).map(String::as_str).collect();
    assert!(
        failures.is_empty(),
        "{} of {tried} {what} lost acknowledged events or broke the journal:\n  {}",
        failures.len(),
        shown.join("\n  ")
    );
}

/// How many of the events of a failed append at `first_seq` the journal holds.
fn appended(storage: &SimStorage, first_seq: u64, event: &torrent_journal::Event) -> usize {
    JournalReader::with_storage(Arc::new(storage.clone()), SIM_DIR)
        .unwrap()
        .appended(first_seq, std::slice::from_ref(event))
        .unwrap()
}

fn assert_poisoned(result: torrent_journal::Result<torrent_journal::Receipt>) {
    match result {
        Err(err @ Error::Poisoned { .. }) => {
            let text = err.to_string();
            assert!(text.contains("reopen the journal"), "{text}");
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

/// Opens a fresh journal, appends three events, and arms a one-shot `kind` fault on the next
/// operation of kind `op` (the fourth append's), given how many such operations came before it.
fn fault_on_fourth_append(op: OpKind, kind: FaultKind, ops_before: u64) -> (SimStorage, Journal) {
    let storage = SimStorage::new();
    let journal = open(&storage).unwrap();
    for n in 1..=3 {
        assert_eq!(journal.append(&small_event(n)).unwrap().first_seq, n);
    }
    storage.inject(Fault {
        op: Some(op),
        nth: ops_before + 1,
        kind,
        persistent: false,
    });
    (storage, journal)
}

/// Checks the failed append is unacknowledged, names seq 4 (the seq its event was given) and
/// an Io error from `op_name` carrying the OS error `errno`, and the writer is poisoned
/// afterwards (single and batched appends alike).
fn assert_failed_then_poisoned(journal: &Journal, op_name: &str, errno: i32) {
    let expected = std::io::Error::from_raw_os_error(errno);
    match journal.append(&small_event(4)) {
        Err(
            err @ Error::Unacknowledged {
                first_seq: 4,
                count: 1,
                ..
            },
        ) => {
            // The OS error is said once: in the message, not again as the error's source
            // (an error chain printed by `tj` would repeat it).
            let message = err.to_string();
            let said = message.matches(&format!("os error {errno}")).count();
            assert_eq!(said, 1, "{message}");
            assert!(
                message.contains("seq 4..=4 was not acknowledged"),
                "{message}"
            );
            assert!(std::error::Error::source(&err).is_none(), "{message}");
            let Error::Unacknowledged { cause, .. } = err else {
                unreachable!()
            };
            let Error::Io {
                op, cause: source, ..
            } = *cause
            else {
                panic!("expected an Io cause from {op_name}, got {cause:?}")
            };
            assert_eq!(op, op_name);
            assert_eq!(source.kind(), expected.kind(), "{source}");
            assert!(
                source.to_string().contains(&format!("os error {errno}")),
                "{source}"
            );
        }
        other => panic!("expected seq 4 unacknowledged by {op_name}, got {other:?}"),
    }
    assert_poisoned(journal.append(&small_event(5)));
    assert_poisoned(journal.append_all(&[small_event(6), small_event(7)]));
}

#[test]
fn a_failed_fdatasync_fails_the_append_and_poisons_until_reopened() {
    // Syncs so far: one for the first segment's header, one per append.
    let (storage, journal) = fault_on_fourth_append(OpKind::Sync, FaultKind::Eio, 4);
    assert_failed_then_poisoned(&journal, "fdatasync", 5);
    assert_eq!(journal.status().durable_seq(), 3, "seq 4 was never durable");
    journal.close().unwrap();

    // The failed batch's bytes were written (only its durability is unknown), so it may be
    // there after a reopen; every acknowledged event must be.
    let reopened = open(&storage).unwrap();
    let landed = appended(&storage, 4, &small_event(4));
    let next = reopened.append(&small_event(8)).unwrap().first_seq;
    assert!(next == 4 || next == 5, "next seq {next}");
    assert_eq!(
        landed,
        usize::from(next == 5),
        "the lookup agrees with the journal"
    );
    reopened.close().unwrap();
    let m = assert_holds_acked(&storage, &[1, 2, 3, next], "after reopen");
    assert_eq!(m, next);
    // And durably so: a power cut now keeps everything acknowledged. (The reopened writer
    // rotates right away, so seq 4's written-but-never-synced bytes must have been made durable
    // by the reopen; otherwise the sealed segment loses its tail and the journal breaks.)
    assert_holds_acked(
        &storage.crash(CrashFill::Drop),
        &[1, 2, 3, next],
        "after a crash",
    );
}

#[test]
fn a_failed_write_fails_the_append_and_poisons_until_reopened() {
    // Writes so far: the first segment's header, the durable-position file's first content,
    // and per append the frames plus the durable-position update.
    let (storage, journal) = fault_on_fourth_append(OpKind::Write, FaultKind::Eio, 2 + 2 * 3);
    assert_failed_then_poisoned(&journal, "write", 5);
    journal.close().unwrap();

    let reopened = open(&storage).unwrap();
    // The simulated write failed before any byte landed, so seq 4 is free again.
    assert_eq!(appended(&storage, 4, &small_event(4)), 0);
    assert_eq!(reopened.append(&small_event(8)).unwrap().first_seq, 4);
    // Once seq 4 holds another event, the lookup still says the failed one is not there.
    assert_eq!(appended(&storage, 4, &small_event(4)), 0);
    assert_eq!(appended(&storage, 4, &small_event(8)), 1);
    reopened.close().unwrap();
    assert_eq!(seqs_of(&storage), [1, 2, 3, 4]);
}

#[test]
fn enospc_then_freed_space_then_reopen_loses_nothing_acknowledged() {
    let (storage, journal) = fault_on_fourth_append(OpKind::Write, FaultKind::Enospc, 2 + 2 * 3);
    assert_failed_then_poisoned(&journal, "write", 28);
    journal.close().unwrap();
    // The fault was one-shot: space has been freed.
    let reopened = open(&storage).unwrap();
    let mut acked = vec![1, 2, 3];
    for n in 10..30 {
        acked.push(reopened.append(&small_event(n)).unwrap().first_seq);
    }
    reopened.close().unwrap();
    assert_eq!(acked, (1..=23).collect::<Vec<_>>());
    assert_holds_acked(&storage, &acked, "after reopen");
    assert_holds_acked(&storage.crash(CrashFill::Drop), &acked, "after a crash");
}

/// Appends `events` events one at a time; whenever an append fails, closes and reopens (the
/// faults are one-shot) and carries on. Returns the acknowledged seqs and how many appends or
/// opens failed.
fn workload_with_reopens(storage: &SimStorage, events: u64) -> (Vec<u64>, u32) {
    let mut failures = 0;
    let open_retrying = |failures: &mut u32| loop {
        match open(storage) {
            Ok(journal) => break journal,
            Err(err) => {
                *failures += 1;
                assert!(*failures < 10, "cannot reopen: {err}");
            }
        }
    };
    let mut journal = open_retrying(&mut failures);
    let mut acked = Vec::new();
    for n in 1..=events {
        match journal.append(&small_event(n)) {
            Ok(receipt) => acked.push(receipt.first_seq),
            Err(err) => {
                assert!(
                    matches!(err, Error::Unacknowledged { .. } | Error::Poisoned { .. }),
                    "{err:?}"
                );
                failures += 1;
                let _ = journal.close();
                journal = open_retrying(&mut failures);
            }
        }
    }
    let _ = journal.close();
    (acked, failures)
}

#[test]
fn a_one_shot_enospc_at_any_io_point_loses_nothing_acknowledged_even_after_a_crash() {
    const EVENTS: u64 = 20;
    let kinds = [
        OpKind::Create,
        OpKind::Write,
        OpKind::Sync,
        OpKind::SetLen,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::SyncDir,
    ];
    let mut runs = 0;
    let mut failing_runs = 0;
    let mut lost: Vec<String> = Vec::new();
    for op in kinds {
        for nth in 1..=40 {
            let storage = SimStorage::new();
            storage.inject(Fault {
                op: Some(op),
                nth,
                kind: FaultKind::Enospc,
                persistent: false,
            });
            let (acked, failures) = workload_with_reopens(&storage, EVENTS);
            runs += 1;
            failing_runs += u32::from(failures > 0);
            let what = format!("ENOSPC on {op:?} #{nth}");
            assert!(
                acked.windows(2).all(|w| w[0] < w[1]),
                "{what}: acks in order"
            );
            assert!(
                acked.len() as u64 >= EVENTS - 1,
                "{what}: one fault fails one append"
            );
            assert_holds_acked(&storage, &acked, &what);
            // Acknowledged under EveryBatch means durable: a power cut keeps it.
            let image = storage.crash(CrashFill::Drop);
            if let Err(problem) = check_holds_acked(&image, &acked) {
                lost.push(format!("{what}, then a power cut: {problem}"));
            }
        }
    }
    eprintln!("{runs} fault points tried, {failing_runs} of them failed an operation");
    assert_no_failures(&lost, runs, "one-shot ENOSPC faults");
    assert!(failing_runs > 50, "{failing_runs} runs hit their fault");
}

/// Opens, appends 30 events (rotating through several segments), closes; any error stops the
/// workload. Returns the acknowledged seqs.
fn crash_workload(storage: &SimStorage) -> Vec<u64> {
    let mut acked = Vec::new();
    let Ok(journal) = open(storage) else {
        return acked;
    };
    for n in 1..=30 {
        match journal.append(&small_event(n)) {
            Ok(receipt) => acked.push(receipt.first_seq),
            Err(_) => break,
        }
    }
    let _ = journal.close();
    acked
}

#[test]
fn a_power_cut_at_every_io_point_keeps_every_acknowledged_event() {
    let probe = SimStorage::new();
    let acked = crash_workload(&probe);
    assert_eq!(acked, (1..=30).collect::<Vec<_>>());
    assert!(
        segments(&probe).len() >= 4,
        "the workload rotates: {} segments",
        segments(&probe).len()
    );
    let ops = probe.op_count();

    let fills = [
        CrashFill::Drop,
        CrashFill::Zeros,
        CrashFill::Garbage(1),
        CrashFill::Garbage(0xFEED),
        CrashFill::Garbage(u64::MAX),
    ];
    let mut tried = 0;
    let mut lost: Vec<String> = Vec::new();
    for k in 0..=ops {
        // The workload is deterministic, so one run per crash point serves every fill.
        let storage = SimStorage::new();
        storage.crash_after(k);
        let acked = crash_workload(&storage);
        for fill in fills {
            tried += 1;
            let image = storage.crash(fill);
            let what = format!("crash after {k} of {ops} ops, {fill:?}");
            let journal = match open(&image) {
                Ok(journal) => journal,
                Err(err) => {
                    lost.push(format!("{what}: reopen failed: {err}"));
                    continue;
                }
            };
            let next = journal.append(&small_event(99)).unwrap().first_seq;
            journal.close().unwrap();
            match check_holds_acked(&image, &acked) {
                Ok(m) => assert_eq!(next, m, "{what}: the writer continues after the prefix"),
                Err(problem) => lost.push(format!("{what}: {problem}")),
            }
        }
    }
    eprintln!(
        "{tried} crash images tried: {} crash points x {} fills",
        ops + 1,
        fills.len()
    );
    assert_no_failures(&lost, tried as usize, "crash images");
    assert_eq!(tried, (ops + 1) * fills.len() as u64);
}

#[test]
fn interval_durability_acknowledges_early_and_syncs_soon_after() {
    let storage = SimStorage::new();
    let options = JournalOptions {
        durability: Durability::Interval { interval_ms: 5 },
        ..sim_options(&storage, 1 << 20)
    };
    let journal = Journal::open_with(SIM_DIR, options).unwrap();
    assert_eq!(
        journal.durability(),
        Durability::Interval { interval_ms: 5 }
    );
    for n in 1..=10 {
        assert_eq!(journal.append(&small_event(n)).unwrap().first_seq, n);
    }
    assert_eq!(journal.status().last_seq(), 10);

    let deadline = Instant::now() + Duration::from_secs(1);
    while journal.status().durable_seq() < 10 {
        assert!(
            Instant::now() < deadline,
            "durable_seq stuck at {} of 10 after 1 s",
            journal.status().durable_seq()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The sync really reached the (simulated) disk: a power cut now keeps all ten.
    let image = storage.crash(CrashFill::Drop);
    assert_eq!(seqs_of(&image), (1..=10).collect::<Vec<_>>());
    journal.close().unwrap();
}
