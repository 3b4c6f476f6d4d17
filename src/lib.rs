//! gitopsd: a GitOps reconciliation daemon.
//!
//! The pipeline, one module per stage, grows with each capability; see ARCHITECTURE.md.
//! So far: the daemon config ([`config`]), the command line ([`cli`]), the connection to the
//! Kubernetes API server ([`cluster`]), the config repo mirror ([`source`]), the desired set of
//! each tier ([`render`]) and its validation ([`validate`]), the diff stage ([`diff`]) and where a
//! drift is classified ([`classify`]).
// Two unsafe blocks: the resource limits a renderer's child process gets between fork and
// exec (`render/sandbox.rs`), and libgit2's process-wide connect and read timeouts, set once
// before any fetch (`source::set_network_timeouts`); each documented there. Everything else
// stays safe.
#![deny(unsafe_code)]

pub mod access;
pub mod activity;
pub mod analysis;
pub mod apply;
pub mod audit;
pub mod classify;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod diff;
pub mod discovery;
pub mod drift;
pub mod escape;
pub mod events;
pub mod health;
pub mod hold;
pub mod http;
pub mod leader;
pub mod live;
pub mod logging;
pub mod metrics;
#[cfg(test)]
mod module_cycles;
pub mod notify;
pub mod object;
pub mod outbound;
pub mod ownership;
pub mod podspec;
pub mod policy;
pub mod reconcile;
pub mod render;
pub mod revision;
pub mod signature;
pub mod source;
pub mod state;
pub mod status;
pub mod validate;
pub mod window;
