//! Tier isolation against a hostile config repo (issue 13). Each attack a person with push
//! access to one tier's config could try is a test here: it asserts the refusal (the message
//! names the object and the fix) and, with a separate client, that nothing reached the cluster.
//!
//! One module per wall: the modules below share the support code of the other cluster tests
//! (`crate::support`, `crate::reconcile_support`).

// One line per module; each module holds the tests of one wall.
mod box_;
mod foreign;
mod http;
mod own;
mod sa;
mod scope;
