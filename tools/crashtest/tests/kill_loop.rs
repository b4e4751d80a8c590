//! Proves, with real processes, that SIGKILL at random moments loses no acknowledged event: runs
//! `tj-crashtest --kills 200` (the CI quick version; `--kills 10000` is the soak) and checks it
//! reports 0 lost and a positive number of acknowledged events.

use std::process::Command;

#[test]
fn two_hundred_kills_lose_nothing_acknowledged() {
    let output = Command::new(env!("CARGO_BIN_EXE_tj-crashtest"))
        .args(["--kills", "200", "--max-run-ms", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    eprintln!("{summary}");
    let field = |name: &str| -> u64 {
        let words: Vec<&str> = summary.split_whitespace().collect();
        let at = words.iter().position(|w| *w == name).unwrap();
        words[at + 1].parse().unwrap()
    };
    assert_eq!(field("kills"), 200);
    assert_eq!(field("lost"), 0);
    assert!(field("acknowledged") > 200, "{summary}");
}
