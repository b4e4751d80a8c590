//! Proves `tj`'s exit code follows the library error's type, not its text: on a small `tj demo`
//! store, replaying into a `state.db` that is not a SQLite database is damage
//! (`ProjectionDamaged`, exit 1); exporting a seq past the journal's last event is the caller's
//! mistake (`InvalidArgument`, exit 2); replaying into a database SQLite cannot create (its
//! directory does not exist) is a SQLite failure that is not damage (`Sqlite`, exit 3). Each
//! error message names the file or the seq. (`tools/tj/tests/cli.rs` covers journal damage,
//! exit 1, and a missing store directory, exit 2.)

mod common;

use common::*;

#[test]
fn exit_codes_follow_the_error_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    tj_ok(&[
        "demo",
        "--dir",
        arg(&store),
        "--torrents",
        "4",
        "--events",
        "40",
        "-q",
    ]);

    // Damage: a file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a SQLite database at all. ".repeat(64)).unwrap();
    let into = format!("sqlite:{}", arg(&junk));
    let (_, err) = run(&["replay", arg(&store), "--into", &into, "-q"], 1);
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains("junk.db"), "{err}");

    // The caller's mistake: a point the journal never reached.
    let (_, err) = run(&["export", arg(&store), "--at", "999999", "-q"], 2);
    assert!(err.contains("999999"), "{err}");

    // Neither: SQLite cannot open a database in a directory that does not exist.
    let missing = dir.path().join("no-such-dir").join("state.db");
    let into = format!("sqlite:{}", arg(&missing));
    let (_, err) = run(&["replay", arg(&store), "--into", &into, "-q"], 3);
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(!missing.exists());
}
