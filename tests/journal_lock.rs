//! Proves the single-writer rule: a second writer — another handle in this process, or another
//! process — is refused with `Error::Locked` naming the holder's pid, while readers need no lock.
//! The second process is this test binary re-run with an environment variable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use torrent_journal::{Error, Journal, JournalReader};

const CHILD_DIR_VAR: &str = "TJ_LOCK_TEST_CHILD_DIR";

#[test]
fn a_second_writer_in_the_same_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Journal::open(tmp.path()).unwrap();
    match Journal::open(tmp.path()) {
        Err(Error::Locked { pid, path }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert_eq!(path, tmp.path());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Readers need no lock.
    assert_eq!(
        JournalReader::open(tmp.path())
            .unwrap()
            .segments()
            .unwrap()
            .len(),
        1
    );
    first.close().unwrap();
    // Closing releases the lock.
    Journal::open(tmp.path()).unwrap().close().unwrap();
}

#[test]
fn a_second_writer_in_another_process_is_refused_with_its_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_holds_the_lock",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, tmp.path())
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtest prints "test child_holds_the_lock ... " before the child's own line.
    let ready = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| {
            l.split_once("locked ")
                .map(|(_, pid)| pid.trim().to_owned())
        })
        .expect("child reports it holds the lock");
    assert_eq!(ready, child.id().to_string());

    let err = Journal::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, Error::Locked { pid: Some(pid), .. } if pid == child.id()),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("pid {}", child.id())));

    drop(child.stdin.take()); // the child exits when its stdin closes
    assert!(child.wait().unwrap().success());
    Journal::open(tmp.path()).unwrap().close().unwrap();
}

/// Not a test on its own: the child half of the test above (does nothing without the variable).
#[test]
fn child_holds_the_lock() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let journal = Journal::open(&dir).unwrap();
    println!("locked {}", std::process::id());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    journal.close().unwrap();
}
