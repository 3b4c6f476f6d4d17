#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use gitopsd::cli::{Cli, execute};

// mimalloc: with glibc's malloc, the JSON of thousands of live objects built and dropped on
// every reconcile left the daemon's RSS at twice its live heap (fragmentation across
// threads); mimalloc returns freed pages. `--features system-allocator` builds with the
// system allocator, for profilers such as heaptrack that hook malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    execute(Cli::parse()).await
}
