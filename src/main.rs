// One unsafe call: setting mimalloc's purge delay before any thread starts (see `main`).
#![deny(unsafe_code)]

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

/// `mi_option_purge_delay` in `mi_option_e` of mimalloc v3, what libmimalloc-sys builds by
/// default (v2 has it at 15 too); libmimalloc-sys exports no constant for it.
#[cfg(not(feature = "system-allocator"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed pages go back to the OS at once instead of after mimalloc's 10 ms (100 ms for
    // arenas): a first sync of 10,000 objects then peaks at ~135 MiB instead of ~163 MiB
    // (BENCHMARKS.md). Only the default changes: MIMALLOC_PURGE_DELAY still overrides it.
    #[cfg(not(feature = "system-allocator"))]
    // SAFETY: a plain integer option, set before the runtime starts any other thread (the
    // call is not thread safe).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(execute(Cli::parse()));
    // Dropping the runtime would wait for every blocking thread, and a git fetch stuck on a
    // server that never answers would keep a stopped daemon alive (its fetch is cancelled,
    // but a thread in a silent read sees that only at libgit2's read timeout). Everything
    // that matters has finished by now (tiers stopped and saved their state, the Lease
    // was released): what is left gets a moment, then the process exits.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
