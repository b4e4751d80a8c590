//! Proves `tj demo` writes real torrents: every `files/metadata/<hex>.torrent` and every
//! `torrent_metainfo.raw` row in `state.db` decodes strictly as canonical bencode (a decoder
//! with no trailing bytes allowed, and re-encoding gives the same bytes, so keys are sorted and
//! integers unpadded), and the SHA-1 (v1) or SHA-256 (v2, `meta version` 2) of its `info`
//! dictionary is the torrent's info hash: the file name, the row's key. Runs the real `tj`
//! binary on a temporary directory with every projection on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bt_bencode::Value;
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

/// The info hash a strictly decoded `.torrent` names, as lowercase hex; panics with `what` on
/// anything but canonical bencode with an `info` dictionary.
fn info_hash_hex(raw: &[u8], what: &str) -> String {
    let value: Value = bt_bencode::from_slice(raw)
        .unwrap_or_else(|e| panic!("{what}: not a single bencoded value: {e}"));
    let canonical = bt_bencode::to_vec(&value).unwrap();
    assert!(canonical == raw, "{what}: not canonical bencode");
    let info = value
        .get("info")
        .unwrap_or_else(|| panic!("{what}: no info dictionary"));
    assert!(info.is_dict(), "{what}: info is not a dictionary");
    let info_bytes = bt_bencode::to_vec(info).unwrap();
    let digest: Vec<u8> = if info.get("meta version").and_then(Value::as_u64) == Some(2) {
        Sha256::digest(&info_bytes).to_vec()
    } else {
        Sha1::digest(&info_bytes).to_vec()
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn demo(dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_tj"))
        .args([
            "demo",
            "--torrents",
            "48",
            "--events",
            "900",
            "--tasks",
            "3",
        ])
        .args(["--projection", "all", "--dir"])
        .arg(dir)
        .env_remove("TJ_LOG")
        .output()
        .expect("run tj demo");
    assert!(
        output.status.success(),
        "tj demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `metadata/<hex>.torrent` files: file stem → raw bytes.
fn metadata_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("files/metadata")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "torrent") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            files.insert(stem, std::fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn every_demo_torrent_is_canonical_bencode_named_by_the_hash_of_its_info() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());

    let files = metadata_files(tmp.path());
    assert!(files.len() >= 40, "only {} metadata files", files.len());
    let mut v2 = 0;
    for (stem, raw) in &files {
        assert_eq!(
            &info_hash_hex(raw, stem),
            stem,
            "file name is not the info hash"
        );
        v2 += usize::from(stem.len() == 64);
    }
    assert!(v2 > 0, "no v2 torrent among {}", files.len());
    let sizes: Vec<usize> = files.values().map(Vec::len).collect();
    assert!(sizes.iter().min() < Some(&20_000), "sizes {sizes:?}");
    assert!(sizes.iter().max() > Some(&100_000), "sizes {sizes:?}");

    let db = rusqlite::Connection::open(tmp.path().join("state.db")).unwrap();
    let mut statement = db
        .prepare("SELECT info_hash, raw FROM torrent_metainfo ORDER BY info_hash")
        .unwrap();
    let rows: Vec<(String, Vec<u8>)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty(), "torrent_metainfo is empty");
    for (hash, raw) in &rows {
        assert_eq!(
            &info_hash_hex(raw, hash),
            hash,
            "row key is not the info hash"
        );
        if let Some(file) = files.get(hash) {
            assert!(file == raw, "{hash}: file and row hold different bytes");
        }
    }
    // Removed torrents leave the SQLite table; every row left has its file.
    assert!(rows.iter().all(|(hash, _)| files.contains_key(hash)));
}
