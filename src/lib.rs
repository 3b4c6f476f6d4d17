//! gitopsd: a GitOps reconciliation daemon.
//!
//! The pipeline, one module per stage, grows with each capability; see ARCHITECTURE.md.
//! So far: the daemon config ([`config`]), the command line ([`cli`]), the connection to the
//! Kubernetes API server ([`cluster`]), and the config repo mirror ([`source`]).
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod source;
