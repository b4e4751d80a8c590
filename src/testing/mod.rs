//! The embedder's test kit (cargo feature `testing`): a deterministic clock, a scripted client
//! ([`Script`]), a harness that runs a script through a real store ([`Harness`]), and stable
//! renderings of each built-in projection for snapshot tests ([`render`]). The guide below is
//! compiled and run as doctests.
#![doc = include_str!("../../docs/snapshot-testing.md")]
#![warn(missing_docs)]

pub mod format;
mod harness;
pub mod render;
mod script;

pub use crate::model::ManualClock;
pub use crate::storage::{CrashFill, Fault, FaultKind, OpKind, SimStorage};
pub use harness::Harness;
pub use script::{Script, Step};

/// Where scripted time starts: 2023-11-14T22:13:20Z, in Unix nanoseconds.
pub const EPOCH_NANOS: i64 = 1_700_000_000_000_000_000;
