//! Errors of a job, classified by who can fix them.

use std::fmt;

/// An error raised by a user function (process functions return it).
pub type UserError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job failed.
///
/// Every variant that concerns running code names the operator and the core
/// it ran on, so a failure can be traced to one subtask.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// The job's configuration or graph is invalid (user error; fix and rerun).
    #[error("invalid job configuration: {0}")]
    Config(String),
    /// A user function panicked or returned an error.
    #[error("operator '{operator}' failed on core {core}: {message}")]
    UserFunction {
        /// The operator's display name.
        operator: String,
        /// The core (subtask index) it ran on.
        core: usize,
        /// The panic message or the error's text.
        message: String,
    },
    /// A source failed (bad input under the `fail` policy, I/O error, ...).
    #[error("source '{operator}' failed on core {core}: {message}")]
    Source {
        /// The source's display name.
        operator: String,
        /// The core it ran on.
        core: usize,
        /// What went wrong, with coordinates (file and line, ...).
        message: String,
    },
    /// A sink failed to write.
    #[error("sink '{operator}' failed on core {core}: {message}")]
    Sink {
        /// The sink's display name.
        operator: String,
        /// The core it ran on.
        core: usize,
        /// What went wrong.
        message: String,
    },
    /// The runtime could not start or broke an invariant (a brisk bug or an
    /// environment problem such as a missing CPU).
    #[error("runtime error on core {core}: {message}")]
    Runtime {
        /// The core concerned.
        core: usize,
        /// What went wrong.
        message: String,
    },
    /// Checkpointing failed beyond what the configuration tolerates, or
    /// committed output could not be made visible.
    #[error("checkpointing failed: {0}")]
    Checkpoint(String),
    /// The checkpoint or savepoint to restore is unusable (corrupt, missing,
    /// of another job).
    #[error("cannot restore: {0}")]
    Restore(String),
    /// The task stopped because the job was cancelled after another failure.
    #[error("cancelled on core {core} because the job is failing")]
    Cancelled {
        /// The core whose work was cancelled.
        core: usize,
    },
}

impl JobError {
    /// Whether the restart strategy may restart the job after this error
    /// (not for configuration or restore errors, which a restart repeats).
    pub fn is_restartable(&self) -> bool {
        !matches!(self, JobError::Config(_) | JobError::Restore(_) | JobError::Cancelled { .. })
    }

    /// Whether this error is only the echo of another failure.
    pub fn is_cancellation(&self) -> bool {
        matches!(self, JobError::Cancelled { .. })
    }
}

/// The text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked (non-string payload)".to_string()
    }
}

/// Identity of one operator instance: its display name and core.
#[derive(Clone, Debug)]
pub struct OperatorInfo {
    /// Display name (user-given name or the operator kind with its id).
    pub name: std::rc::Rc<str>,
    /// The core this instance runs on.
    pub core: usize,
}

impl OperatorInfo {
    /// Runs a user function, turning a panic into [`JobError::UserFunction`].
    #[inline]
    pub(crate) fn guard<R>(&self, f: impl FnOnce() -> R) -> Result<R, JobError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|p| self.user_error(panic_message(p.as_ref())))
    }

    /// Awaits `f` (user code running as a task of its own: a sink's I/O, a
    /// source's reader) and turns a panic in it into an error naming this
    /// operator, as [`guard`](Self::guard) does for synchronous calls.
    pub(crate) async fn guard_async<R>(
        &self,
        f: impl std::future::Future<Output = R>,
    ) -> Result<R, JobError> {
        use futures_lite::FutureExt;
        std::panic::AssertUnwindSafe(f)
            .catch_unwind()
            .await
            .map_err(|p| self.user_error(panic_message(p.as_ref())))
    }

    /// A [`JobError::UserFunction`] for this operator.
    pub(crate) fn user_error(&self, message: impl fmt::Display) -> JobError {
        JobError::UserFunction {
            operator: self.name.to_string(),
            core: self.core,
            message: message.to_string(),
        }
    }
}
