//! Owns the stable renderings of the built-in projections for snapshot tests: the memory
//! state, the file tree with its contents, every SQLite table — as [`serde_json::Value`]s
//! (feed them to `insta::assert_yaml_snapshot!` or `assert_json_snapshot!`) whose maps are
//! sorted by key, whose rows are sorted, and whose bulky bytes (`.torrent` files, metainfo
//! blobs) are summarized as `<N bytes, crc32c XXXXXXXX>`. [`redact`] blanks volatile fields.

use std::path::Path;

#[cfg(feature = "sqlite")]
use rusqlite::types::ValueRef;
#[cfg(feature = "sqlite")]
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::state::State;

/// What [`redact`] puts in place of a value.
pub const REDACTED: &str = "[redacted]";

/// The reducer's state (the memory projection's, [`crate::projection::MemoryProjection::state`]):
/// torrents, session, metrics and write times, keys sorted, `meta_info` summarized.
pub fn memory(state: &State) -> Result<Value> {
    let mut value =
        serde_json::to_value(state).map_err(|e| Error::Encode(format!("render state: {e}")))?;
    summarize_key(&mut value, "meta_info");
    Ok(sorted(value))
}

/// Every file under a file projection's directory `dir`: relative path (`/`-separated) →
/// its JSON (parsed, so keys sort), its text, or a summary of its bytes (`.torrent` files).
pub fn files(dir: &Path) -> Result<Value> {
    let mut out = Map::new();
    for path in walk(dir)? {
        let bytes = std::fs::read(&path).ctx("read", &path)?;
        let relative = path.strip_prefix(dir).unwrap_or(&path);
        let name: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let content = match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) if name.last().is_some_and(|n| n.ends_with(".json")) => json,
            _ => match String::from_utf8(bytes) {
                Ok(text) if !text.contains('\0') => Value::String(text),
                Err(err) => Value::String(summary(err.as_bytes())),
                Ok(text) => Value::String(summary(text.as_bytes())),
            },
        };
        out.insert(name.join("/"), content);
    }
    let mut value = Value::Object(out);
    summarize_key(&mut value, "meta_info");
    Ok(sorted(value))
}

#[cfg(feature = "sqlite")]
/// Every table of the SQLite database at `path` (the SQLite projection's, or your own), opened
/// read-only: table → rows (column → value), rows sorted, plus `user_version`. Text that
/// holds a JSON object or array is parsed (so its keys sort); blobs are summarized.
pub fn sqlite(path: &Path) -> Result<Value> {
    let sql = |e: rusqlite::Error| Error::InvalidArgument(format!("{}: {e}", path.display()));
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    let mut out = Map::new();
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    out.insert("user_version".into(), version.into());
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(sql)?;
    for table in tables {
        out.insert(table.clone(), Value::Array(rows(&db, &table).map_err(sql)?));
    }
    Ok(sorted(Value::Object(out)))
}

#[cfg(feature = "sqlite")]
/// The rows of `table`, each a map column → value, sorted by their rendering.
fn rows(db: &Connection, table: &str) -> rusqlite::Result<Vec<Value>> {
    let mut query = db.prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))?;
    let names: Vec<String> = query.column_names().map(str::to_owned).collect();
    let mut rows = Vec::new();
    let mut cursor = query.query([])?;
    while let Some(row) = cursor.next()? {
        let mut map = Map::new();
        for (i, name) in names.iter().enumerate() {
            map.insert(name.clone(), cell(row.get_ref(i)?));
        }
        rows.push(sorted(Value::Object(map)));
    }
    rows.sort_by_cached_key(Value::to_string);
    Ok(rows)
}

#[cfg(feature = "sqlite")]
fn cell(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => n.into(),
        ValueRef::Real(x) => x.into(),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            match serde_json::from_str::<Value>(&text) {
                Ok(json @ (Value::Object(_) | Value::Array(_))) => json,
                _ => Value::String(text.into_owned()),
            }
        }
        ValueRef::Blob(bytes) => Value::String(summary(bytes)),
    }
}

/// Replaces the value of every key named in `keys`, at any depth, by [`REDACTED`]: for
/// fields that differ between runs or paths to the same state (metrics row ids after an
/// install, times taken from a real clock).
pub fn redact(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if keys.contains(&key.as_str()) {
                    *child = Value::String(REDACTED.into());
                } else {
                    redact(child, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, keys)),
        _ => {}
    }
}

/// `<N bytes, crc32c XXXXXXXX>`: shows that bytes changed, not the bytes.
pub fn summary(bytes: &[u8]) -> String {
    format!(
        "<{} bytes, crc32c {:08x}>",
        bytes.len(),
        crc32c::crc32c(bytes)
    )
}

/// Summarizes every string under a key `key` (base64 of a `.torrent` in JSON).
fn summarize_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                match child {
                    Value::String(text) if name == key => *text = summary(text.as_bytes()),
                    _ => summarize_key(child, key),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| summarize_key(item, key)),
        _ => {}
    }
}

/// The same value with every map's keys in sorted order (whatever `serde_json`'s map keeps).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Every file under `dir`, recursively, sorted by path.
fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).ctx("list", &next)? {
            let path = entry.ctx("list", &next)?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
