//! Proves the `tj` binary works end to end on a real directory: `demo` writes a journal and
//! reports it as JSON, `verify`, `stats` and `tail` agree with that report, a second `demo`
//! continues the seqs with new torrents, a damaged byte makes `verify` exit 1 naming the segment
//! and the frame's offset, a missing directory is a usage error (exit 2), and `--help` documents
//! the exit codes. Runs the real binary (`CARGO_BIN_EXE_tj`) in temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use torrent_journal::testing::format::frame::FRAME_HEADER_BYTES;
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;

fn tj(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tj"))
        .args(args)
        .env_remove("TJ_LOG")
        .output()
        .expect("run tj")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `tj`, asserts the exit code, and returns stdout.
fn tj_expect(args: &[&str], code: i32) -> String {
    let output = tj(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "tj {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Runs `tj demo` with JSON output and returns the summary.
fn demo(dir: &Path, extra: &[&str]) -> Value {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["demo", "--dir", dir, "--torrents", "200", "--json", "-q"];
    args.extend_from_slice(extra);
    json(&tj_expect(&args, 0))
}

fn stats(dir: &Path) -> Value {
    json(&tj_expect(&["stats", dir.to_str().unwrap(), "--json"], 0))
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn demo_then_verify_stats_and_tail_agree_and_a_second_demo_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir_arg = dir.to_str().unwrap();

    let first = demo(&dir, &[]);
    let events = first["events"].as_u64().expect("events in the summary");
    assert_eq!(events, 200 * 50, "the default is 50 events per torrent");
    assert_eq!(first["first_seq"], 1);
    assert_eq!(first["last_seq"], events);

    let verified = tj_expect(&["verify", dir_arg], 0);
    assert!(verified.contains("ok: every frame verified"), "{verified}");
    assert!(verified.contains(&format!("{events} events")), "{verified}");

    let before = stats(&dir);
    assert_eq!(before["events"], events);
    assert_eq!(before["first_seq"], 1);
    assert_eq!(before["last_seq"], events);
    let torrents_before = before["torrents_seen"].as_u64().unwrap();
    assert!(torrents_before > 0);

    let tail = tj_expect(&["tail", dir_arg], 0);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len() as u64, events, "one line per event");
    for (i, line) in lines.iter().enumerate() {
        let value = json(line);
        assert_eq!(value["seq"], i as u64 + 1, "{line}");
        assert!(value["at"].is_string(), "{line}");
        assert!(value["event"].is_string(), "{line}");
    }
    let from = tj_expect(&["tail", dir_arg, "--from", &(events - 4).to_string()], 0);
    assert_eq!(from.lines().count(), 5, "--from starts at that seq");

    let second = demo(&dir, &["--events", "2000"]);
    assert_eq!(second["first_seq"], events + 1, "seqs continue");
    assert_eq!(second["last_seq"], events + 2000);
    let after = stats(&dir);
    assert_eq!(after["events"], events + 2000);
    let torrents_after = after["torrents_seen"].as_u64().unwrap();
    assert!(
        torrents_after > torrents_before,
        "the second run adds new torrents: {torrents_before} -> {torrents_after}"
    );
    tj_expect(&["verify", dir_arg], 0);
}

#[test]
fn a_damaged_byte_makes_verify_exit_1_naming_the_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir_arg = dir.to_str().unwrap();
    demo(&dir, &["--events", "300"]);
    let segments = segment_files(&dir);
    assert_eq!(segments.len(), 1, "{segments:?}");
    let segment = &segments[0];
    let name = segment.file_name().unwrap().to_str().unwrap();

    let mut bytes = std::fs::read(segment).unwrap();
    let middle = bytes.len() / 2;
    // The frame holding the middle byte: that is where verify must report the damage.
    let mut frame_start = SEGMENT_HEADER_BYTES;
    loop {
        let len = torrent_journal::testing::format::frame::peek_len(&bytes[frame_start..]).unwrap();
        let end = frame_start + FRAME_HEADER_BYTES + len;
        if end > middle {
            break;
        }
        frame_start = end;
    }
    bytes[middle] ^= 0x5A;
    std::fs::write(segment, &bytes).unwrap();

    let report = tj_expect(&["verify", dir_arg], 1);
    assert!(report.contains(name), "names the segment:\n{report}");
    assert!(
        report.contains(&format!("at offset {frame_start}")),
        "names the frame's offset {frame_start}:\n{report}"
    );

    let report = json(&tj_expect(&["verify", dir_arg, "--json"], 1));
    let problem = &report["problems"][0];
    assert_eq!(problem["offset"], frame_start as u64, "{report}");
    assert!(
        problem["segment"].as_str().unwrap().ends_with(name),
        "{report}"
    );

    // Reading through the damage fails too, with the damage exit code and its location.
    let output = tj(&["tail", dir_arg]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(name), "{}", stderr(&output));
}

#[test]
fn verify_of_a_missing_directory_is_a_usage_error() {
    let output = tj(&["verify", "/nonexistent/tj-store"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("/nonexistent/tj-store"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let help = tj_expect(&["--help"], 0);
    assert!(help.contains("Exit codes"), "{help}");
    for code in ["0  success", "1  the journal is damaged", "2  usage error"] {
        assert!(help.contains(code), "{code:?} missing from:\n{help}");
    }
}
