//! What a reconcile or a checkout failed at, on which object: the reason shown in the tier's
//! status (`lastError`) and its sync record, worded as before these were strings.

use crate::drift::DriftError;
use crate::live::LiveError;
use crate::revision::Revision;
use crate::signature::SignatureError;
use crate::source::SourceError;
use crate::state::StateError;

/// Why the files of a revision (or its commits, or a healthy ref) could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("{revision} is not a commit id: {reason}")]
    NotACommit { revision: Revision, reason: String },
    /// A checkout outside the source mirror (a test's or a bench's) failed.
    #[error("cannot check out {revision}: {reason}")]
    Failed { revision: Revision, reason: String },
    #[error("the source mirror lock is poisoned")]
    LockPoisoned,
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The commits of a range could not be listed (git2).
    #[error(transparent)]
    Commits(#[from] SignatureError),
    #[error("{what} is not supported by this source")]
    Unsupported { what: &'static str },
}

/// Why one sync of a tier stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the tier state could not be read")]
    StateUnreadable,
    #[error("no tier state")]
    NoState,
    #[error("this replica stopped leading: the tier state is not written")]
    NotLeading,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the live cache did not start")]
    CacheNotStarted,
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The live cache could not answer who holds `object`.
    #[error("ownership of {object}: {source}")]
    Ownership {
        object: String,
        #[source]
        source: LiveError,
    },
    /// A watch kept listing again past the wait (`reason` names it).
    #[error("{reason}: still not synced after {waited_secs}s: {source}")]
    CacheNotSynced {
        reason: String,
        waited_secs: u64,
        #[source]
        source: LiveError,
    },
    /// Stopping (SIGTERM, leadership lost) while a watch was listing again.
    #[error("{reason}")]
    CacheListing { reason: String },
    #[error(transparent)]
    Drift(#[from] DriftError),
}
