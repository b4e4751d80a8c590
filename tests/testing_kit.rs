//! Proves the `testing` kit keeps its promises: a script gives the same journal byte for byte
//! on every run (deterministic names, hashes and commit times); renderings sort keys and rows
//! whatever the insertion order; `redact` blanks a key at any depth and nothing else.

use serde_json::json;
use torrent_journal::testing::{Harness, Script, render};

fn journal_bytes(harness: &Harness) -> Vec<(String, Vec<u8>)> {
    let dir = harness.dir().join("journal");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_script_gives_the_same_journal_every_run() {
    let script = || {
        let mut script = Script::new();
        let t = script.add_labelled("debian-12.iso", &["linux"]);
        script
            .metadata(t)
            .start(t)
            .progress(t, 0.5)
            .metrics(t)
            .complete(t)
            .session();
        script
    };
    let (a, b) = (Harness::new().unwrap(), Harness::new().unwrap());
    a.run(&script()).unwrap();
    b.run(&script()).unwrap();
    let (bytes_a, bytes_b) = (journal_bytes(&a), journal_bytes(&b));
    assert!(!bytes_a.is_empty(), "the journal has segments");
    assert_eq!(bytes_a, bytes_b);
    let times: Vec<i64> = script()
        .steps()
        .iter()
        .map(|s| s.at.as_unix_nanos())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == 1_000_000_000),
        "{times:?}"
    );
}

#[test]
fn renderings_are_sorted_and_redaction_is_exact() {
    let harness = Harness::new().unwrap();
    let db = harness.dir().join("own.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE z (b TEXT, a INTEGER); INSERT INTO z VALUES ('y', 2), ('x', 1);
         CREATE TABLE a (data TEXT, id INTEGER); INSERT INTO a VALUES ('{\"k\":{\"id\":7,\"v\":1}}', 9);",
    )
    .unwrap();
    drop(conn);
    let mut tables = render::sqlite(&db).unwrap();
    let keys: Vec<&String> = tables.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "user_version", "z"]);
    assert_eq!(tables["z"], json!([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]));
    render::redact(&mut tables, &["id"]);
    assert_eq!(
        tables["a"],
        json!([{"data": {"k": {"id": render::REDACTED, "v": 1}}, "id": render::REDACTED}])
    );
    assert_eq!(tables["z"][0]["a"], 1, "other keys untouched");
}
