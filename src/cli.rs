//! The command line: `gitopsd <command>`. Each command is a thin layer over the library.

mod checkout;
mod diff;
mod error;
mod promote;
mod render;
mod status;
mod sync;
mod validate;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use checkout::*;
use diff::*;
pub use error::CliError;
use render::*;
use validate::*;

use crate::config::{Config, SourceConfig};
use crate::escape::{escape_line, escape_text};
use crate::logging::LogFormat;
use crate::render::{DesiredSet, KindScopes, Limits, ObjectScope};
use crate::validate::{Finding, Level};

/// gitopsd keeps Kubernetes clusters in step with a config git repository, tier by tier
/// (experimental -> validation -> operational), and tells a harmless drift from a dangerous one.
#[derive(Debug, Parser)]
#[command(name = "gitopsd", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    gitopsd run --config /etc/gitopsd/gitopsd.yaml\n  \
    gitopsd run --config examples/gitopsd.yaml --check\n\n\
    Docs: README.md, docs/config.md")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "GITOPSD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: follow the config repo, and for every tier apply what git says, correct or
    /// report drift as the tier's policy says, prune what left git, watch health and roll back;
    /// serve status on http.listen. Stops cleanly on SIGTERM.
    #[command(after_help = "Examples:\n  \
        gitopsd run --config examples/gitopsd.yaml --check      # validate the config only\n  \
        gitopsd run --config /etc/gitopsd/gitopsd.yaml          # in a cluster (in-cluster credentials)\n  \
        gitopsd run --config gitopsd.yaml --kubeconfig ~/.kube/config --workdir /var/tmp/gitopsd\n\n\
        Status: GET http://<http.listen>/api/v1/tiers; sync now: POST /api/v1/tiers/<tier>/sync.\n\
        State (inventory, last applied and healthy revisions): ConfigMaps gitopsd-state-<tier> in state.namespace.\n\
        Audit log: audit.path (default <workdir>/source/<key>/audit.log, beside the source's mirror); Kubernetes Events regarding gitopsd-state-<tier>.")]
    Run(RunArgs),
    /// Print a tier's desired set: base plus the tier's overlay, ordered, labelled, hashed.
    #[command(after_help = "Examples:\n  \
        gitopsd render --tier experimental --repo examples/config-repo\n  \
        gitopsd render --tier operational --repo https://git.example.com/platform/config.git --ref tier/operational -o json\n  \
        gitopsd render --tier validation --config /etc/gitopsd/gitopsd.yaml")]
    Render(RenderArgs),
    /// Render and validate tiers (schema, security, scope; kinds against the cluster when one
    /// answers); print every finding; exit 1 when one blocks.
    #[command(after_help = "Examples:\n  \
        gitopsd validate --config examples/gitopsd.yaml --repo examples/config-repo\n  \
        gitopsd validate --config gitopsd.yaml --tier operational --kubeconfig ~/.kube/config")]
    Validate(ValidateArgs),
    /// Render a tier and diff it against the cluster: every drift with its severity, rule and
    /// the tier's action; exit 0 when there is none, 1 when there is, 2 on error.
    #[command(after_help = "Examples:\n  \
        gitopsd diff --tier experimental --repo examples/config-repo\n  \
        gitopsd diff --tier operational --config /etc/gitopsd/gitopsd.yaml -o json\n  \
        gitopsd diff --tier validation --repo . --ref tier/validation --kubeconfig ~/.kube/config")]
    Diff(DiffArgs),
    /// Show a running daemon's tiers, read from its status endpoint: revision, sync, health,
    /// drift by severity, last sync and last error; exit 2 when the daemon cannot be asked.
    #[command(after_help = "Examples:\n  \
        gitopsd status                                      # the daemon on this machine\n  \
        gitopsd status --server http://gitopsd.internal:8080 -o json\n  \
        gitopsd status --watch --interval 5s                # rows again as they change, until Ctrl-C\n  \
        kubectl -n gitopsd port-forward deploy/gitopsd 8080 & gitopsd status\n\n\
        Dashboard: http://<http.listen>/; a tier's drift as a diff: GET /api/v1/tiers/<tier>/diff.")]
    Status(StatusArgs),
    /// Ask a running daemon to sync a tier now (fetch, then reconcile), as `flux reconcile`
    /// does; needs the daemon's API token. With --wait, wait for that reconcile and print its
    /// result: exit 0 when it succeeded, 1 when it failed or the revision is held back, 2 when
    /// the daemon cannot be asked.
    #[command(after_help = "Examples:\n  \
        gitopsd sync experimental --token-file /etc/gitopsd/api-token\n  \
        GITOPSD_TOKEN=$(cat api-token) gitopsd sync operational --wait --timeout 10m\n  \
        gitopsd sync operational --override-window --server http://gitopsd.internal:8080 --token-file api-token\n\n\
        The token is the content of the daemon's http.tokenFile; the daemon's audit log records who asked ($USER).")]
    Sync(sync::SyncArgs),
    /// Push a revision that is healthy in FROM to TO's ref, after the promotion gate the
    /// daemon enforces (TO's soak and gate); fast-forward only unless --force; prints the
    /// commits promoted. Exit 0 when pushed (or already there), 1 when the gate is closed or
    /// the push refused, 2 on a config error.
    #[command(after_help = "Examples:\n  \
        gitopsd promote experimental validation --config /etc/gitopsd/gitopsd.yaml\n  \
        gitopsd promote validation operational --config gitopsd.yaml --revision 3f2a9c1\n  \
        gitopsd promote validation operational --config gitopsd.yaml --force   # rewrite operational's ref\n\n\
        Evidence: FROM's state in the cluster (gitopsd-state-FROM), or refs/gitopsd/healthy/FROM/<sha> in the config repo.")]
    Promote(promote::PromoteArgs),
    /// Check the daemon's audit log (audit.path, default <workdir>/source/<key>/audit.log).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the shell completion script for SHELL (subcommands, flags, their values).
    #[command(after_help = "Examples:\n  \
        source <(gitopsd completions bash)                                  # this bash session\n  \
        gitopsd completions bash > ~/.local/share/bash-completion/completions/gitopsd\n  \
        gitopsd completions zsh > \"${fpath[1]}/_gitopsd\"\n  \
        gitopsd completions fish > ~/.config/fish/completions/gitopsd.fish")]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's chain: every line parses, seq goes up by one, and each line's prev
    /// is the sha256 of the line before (the first line's: 64 zeros). Exit 0 when the chain is
    /// intact, 1 at the first broken line (edited, removed or reordered lines, a torn last
    /// line), 2 when the file cannot be read.
    #[command(after_help = "Examples:\n  \
        gitopsd audit verify /var/lib/gitopsd/audit.log\n  \
        gitopsd audit verify \"$GITOPSD_WORKDIR/audit.log\" && echo chain intact")]
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The audit log to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Where the config repo comes from, for the commands that read it once.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The config repo: a directory (its files as they are on disk, unless --ref is given), a
    /// path to a git repository, or an https://, ssh:// or file:// URL. Default: the config's
    /// source.url.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub repo: Option<String>,

    /// The branch, tag or commit to render. Default: the tier's ref in the config, or the files
    /// on disk when --repo is a directory.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
}

impl RepoArgs {
    /// The ref to read: `--ref` if given; none (the files on disk) when `--repo` names the
    /// repo without a ref; otherwise the tier's ref from the config.
    fn effective_ref(&self, tier_ref: Option<&str>) -> Option<String> {
        match (&self.git_ref, &self.repo) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(_)) => None,
            (None, None) => tier_ref.map(str::to_owned),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The tier to render.
    #[arg(short, long)]
    pub tier: String,

    #[command(flatten)]
    pub repo: RepoArgs,

    /// The daemon config, for the repo URL, credentials and the tier's ref.
    #[arg(short, long, value_name = "FILE", env = "GITOPSD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Learn which kinds are namespaced from this cluster's discovery (default: in-cluster
    /// config or KUBECONFIG, if any; else the built-in kinds, as --offline).
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub kubeconfig: Option<PathBuf>,

    /// Do not contact a cluster: only Kubernetes' own kinds and the CRDs in the tier have a
    /// known scope; any other kind gets no namespace.
    #[arg(long)]
    pub offline: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The daemon config: which tiers exist, their namespaces and validation levels.
    #[arg(short, long, value_name = "FILE", env = "GITOPSD_CONFIG")]
    pub config: PathBuf,

    /// Validate only this tier (default: every tier).
    #[arg(short, long)]
    pub tier: Option<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    /// Check kinds and their scope against this cluster's discovery (default: in-cluster
    /// config or KUBECONFIG, if any).
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub kubeconfig: Option<PathBuf>,

    /// Do not contact a cluster: only Kubernetes' own kinds (of the version gitopsd is built
    /// for) and the CRDs in the tier have a known scope; any other kind blocks.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The tier to diff.
    #[arg(short, long)]
    pub tier: String,

    /// The daemon config: the repo, the tier's ref, and its policy and severity overrides.
    /// Without one, the default policy (apply every severity) and the default rules.
    #[arg(short, long, value_name = "FILE", env = "GITOPSD_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub repo: RepoArgs,

    /// Kubeconfig to use instead of in-cluster config, KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = DiffFormat::Text)]
    pub output: DiffFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's status endpoint (its http.listen); plain http only.
    #[arg(long, value_name = "URL", env = "GITOPSD_SERVER", default_value = status::DEFAULT_SERVER)]
    pub server: String,

    /// Output format: a table, or the API's JSON (GET /api/v1/tiers).
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,

    /// Watch: print the table, then each row again when it changes (JSON: the answer again,
    /// on one line), until Ctrl-C.
    #[arg(short, long)]
    pub watch: bool,

    /// With --watch: how often to ask the daemon, e.g. 2s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "watch")]
    pub interval: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
enum IntervalError {
    #[error(transparent)]
    Parse(#[from] humantime::DurationError),
    #[error("must be more than 0s")]
    Zero,
}

/// A `--interval`: a humantime duration that is not zero (a loop without a pause).
fn parse_interval(text: &str) -> Result<std::time::Duration, IntervalError> {
    let d = humantime::parse_duration(text)?;
    if d.is_zero() {
        return Err(IntervalError::Zero);
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The daemon config (gitopsd.yaml): source repo, tiers, policies, HTTP.
    #[arg(short, long, value_name = "FILE", env = "GITOPSD_CONFIG")]
    pub config: PathBuf,

    /// Kubeconfig to use instead of in-cluster config, KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Validate the config and the files it names (tokens, secrets, keys: each must be
    /// readable) and exit: 0 when all is valid, 2 with the error (field, line, path) when not.
    #[arg(long)]
    pub check: bool,

    /// Where the config repo mirror and its exported revisions are kept (a scratch
    /// directory: deleting it costs one full fetch): one mirror per source URL, which one
    /// daemon at a time may use.
    #[arg(long, value_name = "DIR", env = "GITOPSD_WORKDIR", default_value_os_t = default_workdir())]
    pub workdir: PathBuf,

    /// Elect a leader among replicas with a Lease (as `leaderElection.enabled: true` in the
    /// config): only the leader reconciles; the others serve health, metrics and status.
    #[arg(long, env = "GITOPSD_LEADER_ELECT")]
    pub leader_elect: bool,
}

fn default_workdir() -> PathBuf {
    std::env::temp_dir().join("gitopsd")
}

/// The audit log of a daemon: `audit.path`, or `audit.log` in its source's directory under
/// `workdir`, keyed by the source URL as the mirror is, so that daemons sharing a workdir keep
/// a chain each (and the one following a URL holds the directory, `source::MirrorLock`).
fn audit_path(config: &Config, workdir: &Path) -> PathBuf {
    config
        .audit
        .path_in(&crate::source::mirror_dir(workdir, &config.source.url))
}

/// The default audit log before it was kept per source, `<workdir>/audit.log`: left where it
/// is and never appended to again (it may hold the records of several daemons, so no daemon
/// can claim it); `gitopsd audit verify` still checks it, and the daemon names it at start.
const UNKEYED_AUDIT_LOG: &str = "audit.log";

/// Exit code for a config or usage error, as clap uses for usage errors.
const EXIT_CONFIG: u8 = 2;

pub async fn execute(cli: Cli) -> ExitCode {
    // kube-client logs each failed request itself; gitopsd reports the same failure with the
    // object and the fix, so the client's own line is noise by default (RUST_LOG brings it back).
    let json = crate::logging::init(cli.log_format, "info,kube_client=off");
    let report = Report { json };
    match cli.command {
        Command::Run(args) => run(args, report).await,
        Command::Render(args) => render(args, report).await,
        Command::Validate(args) => validate(args, report).await,
        Command::Diff(args) => diff(args, report).await,
        Command::Status(args) => status::run(args, report).await,
        Command::Sync(args) => sync::run(args, report).await,
        Command::Promote(args) => promote::run(args, report).await,
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(&args, report),
        Command::Completions(args) => completions(args.shell, report),
    }
}

/// Says why a command failed: a JSON log line for log collectors, a plain `error:` line for a
/// person at a terminal; never both.
#[derive(Clone, Copy)]
struct Report {
    json: bool,
}

impl Report {
    fn error(self, what: &str, err: &dyn std::fmt::Display) {
        if self.json {
            error!(error = %err, "{what}");
        } else {
            eprintln!("error: {}", escape_text(&err.to_string()));
        }
    }
}

async fn run(args: RunArgs, report: Report) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report.error("invalid config", &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        // The files it names are read at start-up: a missing one fails the check, not the pod.
        if let Err(e) = config.check_files(&args.config) {
            report.error("invalid config", &e);
            return ExitCode::from(EXIT_CONFIG);
        }
        println!(
            "{}: valid ({} tiers: {})",
            args.config.display(),
            config.tiers.len(),
            config
                .tiers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let requests = crate::live::RequestCounter::new();
    let conn =
        match crate::cluster::connect_counted(args.kubeconfig.as_deref(), Some(&requests)).await {
            Ok(c) => c,
            Err(e) => {
                report.error("cannot connect to Kubernetes", &e);
                return ExitCode::FAILURE;
            }
        };
    info!(server = %conn.server, version = %conn.version.git_version, "connected to Kubernetes");
    let metrics = match crate::metrics::Metrics::new(&config.tiers, Some(requests.clone())) {
        Ok(m) => std::sync::Arc::new(m),
        Err(e) => {
            report.error("cannot set up the metrics", &e);
            return ExitCode::FAILURE;
        }
    };
    for tier in &config.tiers {
        info!(
            tier = %tier.name,
            git_ref = %tier.git_ref,
            namespaces = ?tier.namespaces,
            promote_from = tier.promote_from.as_deref().unwrap_or("-"),
            service_account = %tier.service_account.as_ref().map_or("-".to_owned(), |sa| sa.to_string()),
            "tier configured"
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // The source's directory first: a second daemon on the same repo and workdir is refused
    // naming the mirror and its holder, before it opens the audit log kept there.
    let source_dir = crate::source::mirror_dir(&args.workdir, &config.source.url);
    let mirror_lock = match crate::source::MirrorLock::acquire(&source_dir, &config.source.url) {
        Ok(lock) => lock,
        Err(e) => {
            report.error("cannot take the source's directory", &e);
            return ExitCode::FAILURE;
        }
    };
    let audit_path = audit_path(&config, &args.workdir);
    let unkeyed = args.workdir.join(UNKEYED_AUDIT_LOG);
    if config.audit.path.is_none() && unkeyed != audit_path && unkeyed.is_file() {
        warn!(
            old = %unkeyed.display(),
            path = %audit_path.display(),
            "an audit log written by an earlier gitopsd (whose default was one file per workdir) is kept as it is and no longer appended to; `gitopsd audit verify` still checks it; this daemon's log is `path`"
        );
    }
    let audit = match crate::audit::AuditWriter::start(&audit_path) {
        Ok(log) => std::sync::Arc::new(log),
        Err(e) => {
            report.error("cannot open the audit log", &e);
            return ExitCode::FAILURE;
        }
    };
    info!(path = %audit_path.display(), "audit log");
    let state_namespace = crate::state::StateStore::default_namespace(&config.state);
    let (events, events_task) =
        crate::events::EventsObserver::start(conn.client.clone(), &state_namespace);
    let mut observers: Vec<std::sync::Arc<dyn crate::activity::Observer>> =
        vec![metrics.clone(), audit, events];
    // Only when configured: no delivery task, no client, otherwise.
    let mut notify_tasks = Vec::new();
    if let Some(n) = &config.notifications {
        match crate::notify::Notifier::start(
            n,
            &config.tiers,
            Some(metrics.notifications()),
            shutdown.clone(),
        ) {
            Ok((notifier, tasks)) => {
                info!(
                    sinks = n.sinks.len(),
                    routes = n.routes.len(),
                    "notifications"
                );
                observers.push(notifier);
                notify_tasks = tasks;
            }
            Err(e) => {
                report.error("cannot start notifications", &e);
                return ExitCode::FAILURE;
            }
        }
    }
    let options = crate::daemon::DaemonOptions {
        workdir: args.workdir.clone(),
        observers: crate::activity::Observers::new(observers),
        metrics: Some(metrics),
        leader_elect: args.leader_elect,
        kube_config: Some(conn.config.clone()),
        requests: Some(requests),
        mirror_lock: Some(Arc::new(mirror_lock)),
    };
    let result = crate::daemon::run(config, conn.client, options, shutdown).await;
    // The observers are dropped with the daemon: the audit log is fsynced, and the Events
    // still queued get a moment to be published.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), events_task).await;
    // Notifications already queued get the same moment (their retries stopped at shutdown).
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        futures::future::join_all(notify_tasks),
    )
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report.error("gitopsd stopped", &e);
            ExitCode::FAILURE
        }
    }
}

/// `gitopsd completions SHELL`: the script on stdout, generated from the same definition that
/// parses the command line, so it cannot fall behind it.
fn completions(shell: clap_complete::Shell, report: Report) -> ExitCode {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gitopsd", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            report.error("cannot print the completion script", &e);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `gitopsd audit verify` exit codes: 1 for a broken chain, 2 for a file that cannot be read.
const EXIT_AUDIT_BROKEN: u8 = 1;
const EXIT_AUDIT_UNREADABLE: u8 = 2;

fn audit_verify(args: &AuditVerifyArgs, report: Report) -> ExitCode {
    // Streamed line by line: a log of any size is checked in bounded memory.
    let verdict = match crate::audit::verify_file(&args.file) {
        Ok(v) => v,
        Err(crate::audit::AuditError::Read { source, .. }) => {
            report.error(
                "cannot read the audit log",
                &format!("cannot read {}: {source}", args.file.display()),
            );
            return ExitCode::from(EXIT_AUDIT_UNREADABLE);
        }
        Err(e) => {
            report.error("cannot read the audit log", &e);
            return ExitCode::from(EXIT_AUDIT_UNREADABLE);
        }
    };
    match verdict {
        crate::audit::Verdict::Intact { lines, torn } => {
            if torn.is_empty() {
                println!("ok: {lines} lines, chain intact");
            } else {
                let list: Vec<String> = torn.iter().map(usize::to_string).collect();
                println!(
                    "ok: {lines} lines, chain intact (torn lines {}, cut short by a crash, acknowledged by gitopsd on restart)",
                    list.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        crate::audit::Verdict::Broken { line, reason } => {
            println!("line {line}: {reason}");
            ExitCode::from(EXIT_AUDIT_BROKEN)
        }
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C: stop starting work, finish what runs.
async fn stop_on_signal(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gitopsd cleanly");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received"),
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_default_audit_log_is_one_per_source_url() {
        let config = |url: &str, audit: &str| {
            Config::parse(
                &format!(
                    "source: {{url: {url}}}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev]}}\n{audit}"
                ),
                Path::new("gitopsd.yaml"),
            )
            .expect("config")
        };
        let work = Path::new("/var/tmp/gitopsd");
        let a = audit_path(&config("https://git.example.com/a.git", ""), work);
        let b = audit_path(&config("https://git.example.com/b.git", ""), work);
        assert_ne!(a, b, "two repos, two chains");
        for (path, url) in [
            (&a, "https://git.example.com/a.git"),
            (&b, "https://git.example.com/b.git"),
        ] {
            let url = config(url, "").source.url;
            assert_eq!(
                *path,
                crate::source::mirror_dir(work, &url).join("audit.log")
            );
        }
        assert_ne!(a, work.join(UNKEYED_AUDIT_LOG));
        // A path set in the config is used as it is, by whichever daemon.
        let set = config(
            "https://git.example.com/a.git",
            "audit:\n  path: /var/log/gitopsd/audit.log\n",
        );
        assert_eq!(
            audit_path(&set, work),
            Path::new("/var/log/gitopsd/audit.log")
        );
    }

    #[test]
    fn run_requires_a_config_file() {
        let err = Cli::try_parse_from(["gitopsd", "run"]).unwrap_err();
        assert!(err.to_string().contains("--config <FILE>"), "{err}");
    }

    #[test]
    fn diff_defaults_to_text_output() {
        let cli = Cli::try_parse_from(["gitopsd", "diff", "--tier", "experimental"]).unwrap();
        let Command::Diff(args) = cli.command else {
            panic!("expected the diff command");
        };
        assert_eq!(args.output, DiffFormat::Text);
        assert_eq!(args.tier, "experimental");
    }

    #[test]
    fn status_defaults_to_a_table_from_the_local_daemon() {
        let cli = Cli::try_parse_from(["gitopsd", "status"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("expected the status command");
        };
        assert_eq!(args.output, StatusFormat::Table);
        if std::env::var_os("GITOPSD_SERVER").is_none() {
            assert_eq!(args.server, "http://127.0.0.1:8080");
        }
    }

    #[test]
    fn sync_takes_a_tier_and_waits_only_when_asked() {
        let cli = Cli::try_parse_from(["gitopsd", "sync", "operational"]).unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("expected the sync command");
        };
        assert_eq!(args.tier, "operational");
        assert!(!args.wait && !args.override_window);
        assert_eq!(args.timeout, std::time::Duration::from_secs(300));
        let cli = Cli::try_parse_from([
            "gitopsd",
            "sync",
            "exp",
            "-w",
            "--timeout",
            "30s",
            "--token-file",
            "/t",
        ])
        .unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("expected the sync command");
        };
        assert!(args.wait);
        assert_eq!(args.timeout, std::time::Duration::from_secs(30));
        assert_eq!(args.token_file.as_deref(), Some(Path::new("/t")));
        assert!(
            Cli::try_parse_from(["gitopsd", "sync"]).is_err(),
            "a tier is needed"
        );
    }

    #[test]
    fn status_watch_interval_defaults_to_2s_and_is_never_zero() {
        let cli = Cli::try_parse_from(["gitopsd", "status", "-w"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("expected the status command");
        };
        assert!(args.watch);
        assert_eq!(args.interval, std::time::Duration::from_secs(2));
        let err = Cli::try_parse_from(["gitopsd", "status", "-w", "--interval", "0s"]).unwrap_err();
        assert!(err.to_string().contains("more than 0s"), "{err}");
        // An interval without --watch is a mistake, not silently ignored.
        assert!(Cli::try_parse_from(["gitopsd", "status", "--interval", "5s"]).is_err());
    }

    #[test]
    fn completions_know_the_shells() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let cli = Cli::try_parse_from(["gitopsd", "completions", shell]).unwrap();
            assert!(matches!(cli.command, Command::Completions(_)), "{shell}");
        }
        assert!(Cli::try_parse_from(["gitopsd", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn run_parses_config_and_check() {
        let cli = Cli::try_parse_from(["gitopsd", "run", "-c", "x.yaml", "--check"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected the run command");
        };
        assert_eq!(args.config, PathBuf::from("x.yaml"));
        assert!(args.check);
    }
}
