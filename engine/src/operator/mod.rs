//! Operator implementations. Each is a `Push`
//! that owns its downstream: chaining is a plain call per batch.

pub(crate) mod basic;
pub(crate) mod gate;
pub mod join;
pub mod keyed_process;
pub(crate) mod reduce;
pub mod sink;
pub mod source;
pub mod watermarks;
