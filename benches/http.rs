//! The daemon's HTTP side against the local control plane, with the release binary
//! (`CARGO_BIN_EXE_gitopsd`) run as `gitopsd run`:
//!
//! 1. **commit pushed -> tier applied**: a tier of 10 ConfigMaps in a repo on a file path; per
//!    commit, one ConfigMap's `data.LOG_LEVEL` changes. The clock runs from just before the
//!    file is written and committed (git CLI) until `GET /api/v1/tiers/<tier>` shows that
//!    revision with sync `Synced` (polled every 25 ms; the ConfigMap's new value is then
//!    checked through the API, untimed). Two modes, one daemon each:
//!    - `webhook`: `source.interval: 1h` and `source.webhookSecretFile`; right after the commit
//!      a GitHub push delivery (`X-GitHub-Event: push`, `X-Hub-Signature-256`: HMAC-SHA256 of
//!      the body, body `{"ref":"refs/heads/main","after":"<sha>"}`) is POSTed to `/webhook/git`
//!      and must be answered 202;
//!    - `polling 5s`: `source.interval: 5s`, no webhook.
//!
//!    Before each commit the bench pauses for a random time (up to 1 s with the webhook, up to
//!    the interval when polling) so that commits land at random points of the poll cycle.
//! 2. **`/metrics` and `/api/v1/tiers` under 200 concurrent clients**: a daemon managing 3
//!    tiers of N ConfigMaps each (`source.interval: 1h`, so nothing but the load runs), loaded
//!    from a second process, Debian's `wrk -c 200 -t 2 -d 10s --latency --timeout 10s`, on
//!    loopback only, one endpoint after the other; requests/s, latency percentiles, non-2xx
//!    answers and socket errors from wrk's output, and the daemon's CPU time during each run.
//!
//! A plain `harness = false` bench: `cargo bench --bench http`. Environment:
//! `GITOPSD_BENCH_COMMITS` (commits per mode, default 20), `GITOPSD_BENCH_OBJECTS` (ConfigMaps
//! per tier in 2, default 500), `GITOPSD_BENCH_PARTS` (e.g. `1,2`; default both). The cluster
//! comes from `GITOPSD_TEST_KUBECONFIG`, else `scripts/cluster.sh up` (started or reused). Every
//! namespace the bench creates (objects and state) is deleted at the end, on error too.

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::FutureExt;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use sha2::Sha256;

mod common;
use common::{
    Created, Daemon, Repo, config_map, env_list, env_usize, http_request, kubeconfig, ms,
    percentile, synced_at, unique,
};

/// ConfigMaps in the tier of part 1.
const PART1_OBJECTS: usize = 10;
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often the bench reads the tier's status while it waits for a revision.
const STATUS_EVERY: Duration = Duration::from_millis(25);
const FIRST_SYNC_DEADLINE: Duration = Duration::from_secs(300);
const SECRET: &str = "bench-webhook-secret";
/// wrk's settings: connections, threads, duration.
const WRK_CONNECTIONS: usize = 200;
const WRK_THREADS: usize = 2;
const WRK_SECONDS: u64 = 10;

struct Ctx {
    admin: Client,
    kubeconfig: std::path::PathBuf,
    state_ns: String,
    created: Created,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. Commit pushed -> tier applied.

#[derive(Clone, Copy)]
enum Mode {
    Webhook,
    Polling(Duration),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Webhook => write!(f, "webhook (interval 1h)"),
            Mode::Polling(every) => write!(f, "polling {}s", every.as_secs()),
        }
    }
}

impl Mode {
    /// The longest random pause before a commit.
    fn pause(self) -> Duration {
        match self {
            Mode::Webhook => Duration::from_secs(1),
            Mode::Polling(every) => every,
        }
    }

    fn deadline(self) -> Duration {
        match self {
            Mode::Webhook => Duration::from_secs(30),
            Mode::Polling(every) => 2 * every + Duration::from_secs(30),
        }
    }
}

struct Latencies {
    mode: Mode,
    /// Sorted.
    samples: Vec<Duration>,
}

fn github_push(secret: &str, git_ref: &str, after: &str) -> (Vec<u8>, String) {
    let body = serde_json::json!({"ref": git_ref, "after": after})
        .to_string()
        .into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

async fn post_push(port: u16, sha: &str) -> (u16, String) {
    let (body, signature) = github_push(SECRET, "refs/heads/main", sha);
    tokio::task::spawn_blocking(move || {
        http_request(
            port,
            "POST",
            "/webhook/git",
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &signature),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    })
    .await
    .expect("join")
    .expect("the webhook answers")
}

async fn commit_to_applied(mode: Mode, commits: usize, ctx: &Ctx) -> Latencies {
    let id = unique();
    let tier = format!("bench-http-{id}");
    let ns = tier.clone();
    ctx.created.namespace(&ctx.admin, &ns).await;
    let docs = |level: &str| -> Vec<String> {
        (0..PART1_OBJECTS)
            .map(|i| config_map(i, &ns, if i == 0 { level } else { "info" }))
            .collect()
    };
    let repo = Repo::init(&[&tier]);
    repo.write_file(0, &docs("info"));
    let first = repo.commit("objects");
    let mut daemon = Daemon::start(&ctx.kubeconfig, |dir, port| {
        let source = match mode {
            Mode::Webhook => {
                let secret = dir.join("webhook-secret");
                std::fs::write(&secret, format!("{SECRET}\n")).expect("write the secret");
                format!("interval: 1h, webhookSecretFile: {}", secret.display())
            }
            Mode::Polling(every) => format!("interval: {}s", every.as_secs()),
        };
        format!(
            "source: {{url: {repo}, {source}}}\n\
             tiers:\n  - name: {tier}\n    ref: main\n    namespaces: [{ns}]\n\
             state: {{namespace: {state}}}\n\
             http: {{listen: \"127.0.0.1:{port}\"}}\n",
            repo = repo.path().display(),
            state = ctx.state_ns,
        )
    });
    daemon
        .wait_for(&tier, STATUS_EVERY, FIRST_SYNC_DEADLINE, synced_at(&first))
        .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.admin.clone(), &ns);
    let mut samples = Vec::new();
    for k in 1..=commits {
        let pause = mode.pause().as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(..pause))).await;
        let level = format!("commit-{k}");
        let t0 = Instant::now();
        repo.write_file(0, &docs(&level));
        let sha = repo.commit(&format!("app-0-config: LOG_LEVEL {level}"));
        if let Mode::Webhook = mode {
            let (code, answer) = post_push(daemon.port, &sha).await;
            assert_eq!(code, 202, "webhook answered {code}: {answer}");
        }
        let seen = daemon
            .wait_for(&tier, STATUS_EVERY, mode.deadline(), synced_at(&sha))
            .await;
        let latency = seen - t0;
        let live = config_maps
            .get("app-0-config")
            .await
            .expect("get app-0-config");
        let value = live.data.as_ref().and_then(|d| d.get("LOG_LEVEL")).cloned();
        assert_eq!(value.as_deref(), Some(level.as_str()), "{sha}: not applied");
        eprintln!(
            "  {mode}: commit {k}/{commits} {}: {:.0} ms",
            &sha[..12],
            ms(latency)
        );
        samples.push(latency);
    }
    let exit = daemon.stop().await;
    eprintln!("  {mode}: gitopsd run stopped: {exit}");
    samples.sort();
    Latencies { mode, samples }
}

// ---------------------------------------------------------------------------------------------
// 2. /metrics and /api/v1/tiers under load, with wrk.

/// What wrk printed, parsed.
#[derive(Debug, Default)]
struct Wrk {
    requests: u64,
    requests_per_sec: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    /// "Non-2xx or 3xx responses" (wrk counts answers with a status of 400 and over).
    non_2xx: u64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
}

/// wrk's durations: `950.00us`, `12.31ms`, `1.20s`, `2.00m`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let units = [
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))?;
    number
        .parse::<f64>()
        .ok()
        .map(|n| Duration::from_secs_f64(n * scale))
}

fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => w.max = wrk_duration(max)?,
            ["50%", d] => w.p50 = wrk_duration(d)?,
            ["90%", d] => w.p90 = wrk_duration(d)?,
            ["99%", d] => w.p99 = wrk_duration(d)?,
            [n, "requests", "in", ..] => w.requests = n.parse().ok()?,
            ["Requests/sec:", r] => w.requests_per_sec = r.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => w.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                let numbers: Vec<u64> = rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse().ok())
                    .collect();
                w.socket_errors = numbers.try_into().ok()?;
            }
            _ => {}
        }
    }
    (w.requests > 0 && w.p50 > Duration::ZERO).then_some(w)
}

fn wrk_missing() -> ! {
    panic!(
        "wrk is not installed: part 2 loads the status endpoint with Debian's wrk; run \
         scripts/install-deps.sh (as root), or skip part 2 with GITOPSD_BENCH_PARTS=1"
    )
}

fn check_wrk() {
    match std::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => wrk_missing(),
        Err(e) => panic!("cannot run wrk: {e}"),
        // `wrk --version` prints its usage and exits 1: that it ran is enough.
        Ok(_) => {}
    }
}

/// `wrk` against `http://127.0.0.1:<port><path>`, bounded: killed if it has not ended 30 s
/// after its duration.
async fn run_wrk(port: u16, path: &str) -> (Wrk, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let child = tokio::process::Command::new("wrk")
        .args([
            "-c",
            &WRK_CONNECTIONS.to_string(),
            "-t",
            &WRK_THREADS.to_string(),
            "-d",
            &format!("{WRK_SECONDS}s"),
            "--latency",
            // Requests slower than wrk's timeout (2 s by default) are counted as timeouts and
            // left out of the latency figures; 10 s keeps them in.
            "--timeout",
            "10s",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => wrk_missing(),
            _ => panic!("cannot start wrk: {e}"),
        });
    let bound = Duration::from_secs(WRK_SECONDS + 30);
    let out = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("wrk {url} did not end within {bound:?}"))
        .expect("wrk output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk {url} failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk's output:\n{text}"));
    (parsed, text)
}

/// CPU time (user + system) of a process so far, from /proc/<pid>/stat.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3. Clock ticks
    // are 100 per second on Linux.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Load {
    path: String,
    body_bytes: usize,
    wrk: Wrk,
    daemon_cpu: Duration,
}

async fn endpoints_under_load(n: usize, ctx: &Ctx) -> (Vec<Load>, usize) {
    const TIERS: usize = 3;
    let id = unique();
    let tiers: Vec<String> = (0..TIERS).map(|k| format!("bench-http-{id}-{k}")).collect();
    for ns in &tiers {
        ctx.created.namespace(&ctx.admin, ns).await;
    }
    let names: Vec<&str> = tiers.iter().map(String::as_str).collect();
    let repo = Repo::init(&names);
    // Each tier's ConfigMaps in its own files, in its own namespace (named like the tier).
    for tier in &tiers {
        let docs: Vec<String> = (0..n).map(|i| config_map(i, tier, "info")).collect();
        for (f, chunk) in docs.chunks(100).enumerate() {
            repo.write_docs(&format!("tiers/{tier}/objects-{f:03}.yaml"), chunk);
        }
    }
    let revision = repo.commit("objects");
    let mut daemon = Daemon::start(&ctx.kubeconfig, |_, port| {
        let mut text = format!(
            "source: {{url: {}, interval: 1h}}\ntiers:\n",
            repo.path().display()
        );
        for tier in &tiers {
            text.push_str(&format!(
                "  - name: {tier}\n    ref: main\n    namespaces: [{tier}]\n"
            ));
        }
        text.push_str(&format!(
            "state: {{namespace: {}}}\nhttp: {{listen: \"127.0.0.1:{port}\"}}\n",
            ctx.state_ns
        ));
        text
    });
    for tier in &tiers {
        daemon
            .wait_for(
                tier,
                Duration::from_millis(250),
                FIRST_SYNC_DEADLINE,
                synced_at(&revision),
            )
            .await;
    }
    eprintln!(
        "  {TIERS} tiers of {n} ConfigMaps Synced after {:.1} s",
        daemon.started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for path in ["/metrics", "/api/v1/tiers"] {
        let port = daemon.port;
        let (code, body) = tokio::task::spawn_blocking(move || {
            http_request(port, "GET", path, &[], b"").expect("the endpoint answers")
        })
        .await
        .expect("join");
        assert_eq!(code, 200, "GET {path}: {code}");
        eprintln!(
            "  wrk on {path} ({} bytes), load average before: {}",
            body.len(),
            load_average()
        );
        let cpu0 = process_cpu(daemon.pid);
        let (wrk, text) = run_wrk(daemon.port, path).await;
        let daemon_cpu = process_cpu(daemon.pid).saturating_sub(cpu0);
        eprintln!("{text}");
        results.push(Load {
            path: path.to_owned(),
            body_bytes: body.len(),
            wrk,
            daemon_cpu,
        });
        // Let the sockets of 200 connections close before the next run.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let exit = daemon.stop().await;
    eprintln!("  gitopsd run stopped: {exit}");
    (results, TIERS)
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let commits = env_usize("GITOPSD_BENCH_COMMITS", 20).max(1);
    let n = env_usize("GITOPSD_BENCH_OBJECTS", 500);
    let parts = env_list("GITOPSD_BENCH_PARTS", &[1, 2]);
    if parts.contains(&2) {
        check_wrk();
    }
    let load_before = load_average();

    let kubeconfig = kubeconfig();
    let config = gitopsd::cluster::client_config(Some(&kubeconfig))
        .await
        .expect("load kubeconfig");
    let admin = Client::try_from(config).expect("client");
    let server_version = admin
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|_| "?".into());
    let created = Created::new("http");
    // gitopsd creates its state namespace; the bench deletes it.
    let state_ns = format!("bench-http-state-{}", unique());
    created.note(&state_ns);
    let ctx = Ctx {
        admin: admin.clone(),
        kubeconfig,
        state_ns,
        created: created.clone(),
    };

    let result = std::panic::AssertUnwindSafe(async {
        let mut latencies = Vec::new();
        let mut load = None;
        if parts.contains(&1) {
            for mode in [Mode::Webhook, Mode::Polling(POLL_INTERVAL)] {
                eprintln!("1. commit pushed -> tier applied, {mode}, {commits} commits");
                latencies.push(commit_to_applied(mode, commits, &ctx).await);
            }
        }
        if parts.contains(&2) {
            eprintln!("2. /metrics and /api/v1/tiers under {WRK_CONNECTIONS} clients (wrk)");
            load = Some(endpoints_under_load(n, &ctx).await);
        }
        (latencies, load)
    })
    .catch_unwind()
    .await;
    created.delete_all(&admin).await;
    let (latencies, load) = match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    println!();
    println!(
        "kube-apiserver {server_version}; {}; load average (1, 5, 15 min) before {load_before}, after {}",
        Path::new(env!("CARGO_BIN_EXE_gitopsd")).display(),
        load_average()
    );
    if !latencies.is_empty() {
        println!();
        println!(
            "1. Commit pushed -> tier applied ({PART1_OBJECTS} ConfigMaps, 1 changed per commit; until GET /api/v1/tiers/<tier> shows the revision Synced), ms"
        );
        println!(
            "{:<22} | {:>3} | {:>7} | {:>7} | {:>7}",
            "mode", "n", "p50", "p95", "max"
        );
        for l in &latencies {
            println!(
                "{:<22} | {:>3} | {:>7.0} | {:>7.0} | {:>7.0}",
                l.mode.to_string(),
                l.samples.len(),
                ms(percentile(&l.samples, 0.50)),
                ms(percentile(&l.samples, 0.95)),
                ms(*l.samples.last().expect("a sample")),
            );
        }
    }
    if let Some((results, tiers)) = &load {
        println!();
        println!(
            "2. wrk -c {WRK_CONNECTIONS} -t {WRK_THREADS} -d {WRK_SECONDS}s --latency --timeout 10s, daemon managing {tiers} tiers x {n} ConfigMaps; latencies in ms"
        );
        println!(
            "{:<14} | {:>8} | {:>8} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {:<24} | daemon CPU s",
            "endpoint",
            "body B",
            "requests",
            "req/s",
            "p50",
            "p90",
            "p99",
            "max",
            "non-2xx",
            "socket errors c/r/w/t"
        );
        for r in results {
            let w = &r.wrk;
            let e = w.socket_errors;
            println!(
                "{:<14} | {:>8} | {:>8} | {:>9.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.1} | {:>7} | {:<24} | {:.1}",
                r.path,
                r.body_bytes,
                w.requests,
                w.requests_per_sec,
                ms(w.p50),
                ms(w.p90),
                ms(w.p99),
                ms(w.max),
                w.non_2xx,
                format!("{}/{}/{}/{}", e[0], e[1], e[2], e[3]),
                r.daemon_cpu.as_secs_f64(),
            );
        }
    }
}
