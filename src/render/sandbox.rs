//! The box a renderer's child process (kustomize, and any later one) runs in: resource limits
//! set in the child between fork and exec, so the bounds hold from its first instruction and
//! cover whatever it maps, however it allocates. A hostile repo that makes kustomize expand an
//! alias bomb or loop meets these limits within seconds instead of taking the node's memory.
//!
//! - RLIMIT_AS: the address space. Go reserves address space ahead of use, so the cap is well
//!   above what kustomize's heap needs: kustomize 5.8 builds examples/config-repo/base in
//!   17 MiB of RSS but fails to start now and then under 768 MiB of address space and always
//!   under 576 MiB; 1 GiB passed every time (GOMAXPROCS=2). The default, 2 GiB, stops the
//!   12-line alias bomb of issue 13 ("fatal error: out of memory") after 7.5 s and 800 MiB of
//!   RSS, where it reached 8 GB unboxed. GOMEMLIMIT, half the cap, makes the Go collector
//!   work harder before an allocation fails.
//! - RLIMIT_CPU: CPU seconds over all threads (SIGXCPU at the soft limit, SIGKILL a second
//!   later at the hard one).
//! - RLIMIT_FSIZE 0: a renderer writes nothing but its stdout pipe.
//! - RLIMIT_CORE 0: a crash leaves no core file with the repo's data.
//!
//! The timeout and the output cap are the caller's (kustomize.rs), as before.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::error::ChildLimit;

/// The caps of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub memory_bytes: u64,
    pub cpu: Duration,
}

/// Sets up `cmd` to run inside `caps`. The environment must already be cleared by the caller:
/// only GOMEMLIMIT and GOMAXPROCS are added here.
pub(crate) fn confine(cmd: &mut Command, caps: Caps) {
    // The Go runtime's soft limit, below the hard cap: the collector runs harder as the heap
    // nears it, so a build that fits does not fail on garbage not yet collected.
    cmd.env("GOMEMLIMIT", (caps.memory_bytes / 2).to_string());
    // Fewer runtime threads, each with its stack mapped: what the address space holds does
    // not grow with the node's core count. A render needs no parallelism.
    cmd.env("GOMAXPROCS", "2");
    let cpu = caps.cpu.as_secs().max(1);
    // Built before the fork: the closure below must not allocate.
    let limits: [(Resource, libc::rlim_t, libc::rlim_t); 4] = [
        (libc::RLIMIT_AS, caps.memory_bytes, caps.memory_bytes),
        (libc::RLIMIT_CPU, cpu, cpu + 1),
        (libc::RLIMIT_FSIZE, 0, 0),
        (libc::RLIMIT_CORE, 0, 0),
    ];
    // One of the two unsafe blocks of the library (lib.rs): `pre_exec` runs the closure in the forked
    // child, where only async-signal-safe calls are allowed.
    // SAFETY: the closure only calls setrlimit(2), a plain system call that is
    // async-signal-safe, on values copied into it before the fork; it takes no lock and does
    // not allocate (io::Error::last_os_error only reads errno).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            for (resource, soft, hard) in limits {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Which cap, if any, ended a child that exited with `status` and wrote `stderr`.
pub(crate) fn limit_hit(status: ExitStatus, stderr: &str) -> Option<ChildLimit> {
    match status.signal() {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) if !status.success() => {
            // SIGKILL is also how our own timeout stops it; the caller checks that first.
            return Some(ChildLimit::Cpu);
        }
        _ => {}
    }
    // How the Go runtime (and C programs) report a failed mmap: the address-space cap.
    let oom = [
        "out of memory",
        "cannot allocate memory",
        "failed to reserve page summary memory",
        "failed to create new OS thread",
        // gnulib's xalloc_die (coreutils), Python.
        "memory exhausted",
        "MemoryError",
    ];
    (!status.success() && oom.iter().any(|m| stderr.contains(m))).then_some(ChildLimit::Memory)
}

/// `2 GiB`, `512 MiB`: a byte count as people write it.
pub(crate) fn bytes_human(n: u64) -> String {
    const GIB: u64 = 1024 * 1024 * 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= GIB && n.is_multiple_of(GIB) {
        format!("{} GiB", n / GIB)
    } else if n >= MIB {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str, caps: Caps) -> (ExitStatus, String) {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script).env_clear();
        confine(&mut cmd, caps);
        let out = cmd.output().expect("run sh");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn the_child_runs_with_the_caps_set() {
        let caps = Caps {
            memory_bytes: 512 * 1024 * 1024,
            cpu: Duration::from_secs(7),
        };
        let (status, out) = run(
            "ulimit -v; ulimit -t; ulimit -f; echo $GOMEMLIMIT $GOMAXPROCS",
            caps,
        );
        assert!(status.success(), "{status}");
        assert_eq!(out, "524288\n7\n0\n268435456 2\n");
    }

    #[test]
    fn a_cpu_loop_is_stopped_by_the_cpu_cap() {
        let caps = Caps {
            memory_bytes: 512 * 1024 * 1024,
            cpu: Duration::from_secs(1),
        };
        let (status, _) = run("while :; do :; done", caps);
        assert_eq!(limit_hit(status, ""), Some(ChildLimit::Cpu), "{status}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_human(2 * 1024 * 1024 * 1024), "2 GiB");
        assert_eq!(bytes_human(1536 * 1024 * 1024), "1536 MiB");
        assert_eq!(bytes_human(1000), "1000 bytes");
    }
}
