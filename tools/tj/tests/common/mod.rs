//! Helpers shared by the CLI tests: run the real `tj` binary, check its exit code, parse JSON.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the `tj` binary with `args` (no `TJ_LOG` from the environment).
pub fn tj(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tj"))
        .args(args)
        .env_remove("TJ_LOG")
        .output()
        .expect("run tj")
}

/// Runs `tj`, asserts the exit code, and returns (stdout, stderr).
pub fn run(args: &[&str], code: i32) -> (String, String) {
    let output = tj(args);
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(
        output.status.code(),
        Some(code),
        "tj {}\nstdout:\n{out}\nstderr:\n{err}",
        args.join(" ")
    );
    (out, err)
}

/// Runs `tj`, asserts the exit code, and returns stdout.
pub fn tj_expect(args: &[&str], code: i32) -> String {
    run(args, code).0
}

/// Runs `tj`, asserts it succeeds, and returns stdout.
pub fn tj_ok(args: &[&str]) -> String {
    run(args, 0).0
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

pub fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
