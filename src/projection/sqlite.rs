//! Placeholder: the SQLite projection (being written).

/// Placeholder.
#[derive(Debug)]
pub struct SqliteProjection;
/// Placeholder.
#[derive(Debug, Default)]
pub struct SqliteOptions;
