//! The integration tests, as one test binary: each module was a test binary of its own
//! (`tests/<name>.rs`), which linked the whole crate again; one binary links it once. Run one
//! module with `cargo test --test it reconcile::`, one test with its full name.
//!
//! Shared by the modules: the cluster and namespace helpers (`support`), the `gitopsd run`
//! fixture (`reconcile_support`), git repos and servers (`git_support`) and the faults'
//! helpers (`faults_support`), which stay in tests/ beside tests/faults_apiserver.rs. That one
//! is a binary of its own: it stops and starts the API server of a control plane of its own,
//! which `support::use_kubeconfig` makes the cluster of the whole process.

#[path = "../faults_support/mod.rs"]
mod faults_support;
#[path = "../git_support/mod.rs"]
mod git_support;
#[path = "../reconcile_support/mod.rs"]
mod reconcile_support;
#[path = "../support/mod.rs"]
mod support;

// One line per module, in the order of their names.
mod alert_rules;
mod analysis;
mod apply;
mod atomic_drift;
mod audit;
mod cli;
mod cli_render;
mod commands;
mod config;
mod corpus;
mod dashboard;
mod deploy;
mod drift;
mod faults_clock;
mod faults_git;
mod faults_inventory;
mod faults_throttle;
mod faults_webhook;
mod identity;
mod immutable_crd;
mod isolation;
mod layout;
mod live_cache;
mod local_control_plane;
mod metrics;
mod notify;
mod plan;
mod promotion;
mod reconcile;
mod render_inputs;
mod source_https;
mod source_ssh;
mod state;
mod webhook;
