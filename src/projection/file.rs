//! Placeholder: the file projection (being written).

/// Placeholder.
#[derive(Debug)]
pub struct FileProjection;
/// Placeholder.
#[derive(Debug, Default)]
pub struct FileProjectionOptions;
/// Placeholder.
#[derive(Debug)]
pub struct FileView;
