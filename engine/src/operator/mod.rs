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

/// Work a source or sink leaves for when the job's output is final: after
/// the job's last checkpoint (or the savepoint it stopped with) completes,
/// or, without checkpoints, when every core ended without error. Runs on
/// the control thread, never a core, so it may block (commit a Kafka
/// transaction, commit offsets). Dropped unrun when the job fails. An error
/// fails the job.
pub type Finisher = Box<dyn FnOnce() -> Result<(), String> + Send>;
