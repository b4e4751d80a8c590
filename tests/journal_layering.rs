//! Proves the journal knows bytes, not events (issue 12 §2): no file under `src/journal/` names
//! a module of a higher layer (events, snapshots, history, compaction, the reducer, projections,
//! the store, the typed layer, the store's verification). It reads the sources, so the rule
//! fails here the moment an import (or a path like `crate::event::decode` in code) creeps back,
//! not in a review. Doc comments may mention the layers above; only code lines are checked.

use std::path::Path;

/// Module paths `src/journal/` must not use.
const HIGHER_LAYERS: &[&str] = &[
    "crate::event",
    "crate::snapshot",
    "crate::history",
    "crate::compaction",
    "crate::state",
    "crate::replay",
    "crate::projection",
    "crate::store",
    "crate::typed_journal",
    "crate::verify",
    "crate::follow",
    "crate::salvage",
    "crate::Event",
    "crate::Envelope",
];

#[test]
fn no_journal_source_uses_a_higher_layer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/journal");
    let mut checked = 0;
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for layer in HIGHER_LAYERS {
                if code.contains(layer) {
                    offences.push(format!("{}:{}: {code}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(
        checked >= 9,
        "expected the journal's files, found {checked}"
    );
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}
