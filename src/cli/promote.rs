//! `gitopsd promote FROM TO`: pushes what is healthy in FROM to TO's ref, after the same gate
//! the daemon enforces (TO's `soak` and `gate`; FROM's healthy evidence from its state in the
//! cluster or from the healthy refs in the config repo). Fast-forward only unless `--force`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use git2::{Oid, Sort};

use super::{EXIT_CONFIG, Report, Scratch};
use crate::config::{Config, TierConfig};
use crate::reconcile::{base_digest, promotion_gate};
use crate::revision::{Revision, short};
use crate::source::Source;
use crate::state::{HealthyRecord, StateStore};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The tier whose healthy revision is promoted.
    #[arg(value_name = "FROM")]
    pub from: String,

    /// The tier whose ref receives it.
    #[arg(value_name = "TO")]
    pub to: String,

    /// The commit to promote (a full or abbreviated sha). Default: FROM's last healthy
    /// revision.
    #[arg(long, value_name = "SHA")]
    pub revision: Option<String>,

    /// Push even when TO's ref does not fast-forward to the revision (a rewrite). Never
    /// without it.
    #[arg(long)]
    pub force: bool,

    /// The daemon config: the repo, its credentials (used for the push too), the tiers' refs,
    /// TO's soak and gate.
    #[arg(short, long, value_name = "FILE", env = "GITOPSD_CONFIG")]
    pub config: PathBuf,

    /// The config repo to push to, instead of the config's source.url (same credentials).
    #[arg(long, value_name = "PATH_OR_URL")]
    pub repo: Option<String>,

    /// Kubeconfig to read FROM's state from (in-cluster config, KUBECONFIG or
    /// ~/.kube/config otherwise). Without a reachable cluster, only the healthy refs in git
    /// count as evidence.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// Exit code when the gate is closed or the push is refused.
const EXIT_REFUSED: u8 = 1;

pub async fn run(args: PromoteArgs, report: Report) -> ExitCode {
    let mut config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report.error("invalid config", &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(repo) = &args.repo {
        match repo.parse() {
            Ok(url) => config.source.url = url,
            Err(e) => {
                report.error("invalid --repo", &format!("--repo {repo}: {e}"));
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let (Some(from), Some(to)) = (config.tier(&args.from), config.tier(&args.to)) else {
        let known: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
        report.error(
            "unknown tier",
            &format!(
                "tiers are {}; found FROM {:?}, TO {:?}",
                known.join(", "),
                args.from,
                args.to
            ),
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let (from, mut to) = (from.clone(), to.clone());
    match to.promote_from.as_deref() {
        Some(f) if f != from.name => {
            report.error(
                "promotion refused",
                &format!("tier {} promotes from {f}, not from {}", to.name, from.name),
            );
            return ExitCode::from(EXIT_REFUSED);
        }
        _ => to.promote_from = Some(from.name.clone()),
    }

    // FROM's evidence in the cluster, if one answers.
    let mut evidence: Vec<HealthyRecord> = Vec::new();
    let mut last_healthy: Option<Revision> = None;
    match crate::cluster::connect(args.kubeconfig.as_deref()).await {
        Ok(conn) => {
            let store = StateStore::new(conn.client, &StateStore::default_namespace(&config.state));
            match store.load(&from.name).await {
                Ok(state) => {
                    last_healthy = state.last_healthy_revision.clone();
                    evidence.extend(state.healthy);
                }
                Err(e) => eprintln!("warning: cannot read the state of tier {}: {e}", from.name),
            }
        }
        Err(e) => eprintln!(
            "warning: no cluster to read tier {}'s state from ({e}); only the healthy refs in git count",
            from.name
        ),
    }

    let result = tokio::task::spawn_blocking(move || {
        promote_blocking(&config, &from, &to, &args, evidence, last_healthy)
    })
    .await
    .unwrap_or_else(|e| Err(PromoteError::Task(e)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report.error("promotion refused", &e);
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// Why a promotion was refused or failed; the message follows `error:`.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{0}")]
    Source(#[from] crate::source::SourceError),
    #[error("--revision {given} is no commit of {url}: {source}")]
    NoSuchRevision {
        given: String,
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "tier {tier} has no healthy revision (neither in its state in the cluster nor as refs/gitopsd/healthy/{tier}/* in {url})"
    )]
    NoHealthyRevision { tier: String, url: String },
    #[error("commit {revision} is not in {url}'s history of {from_ref} or {to_ref}")]
    NotInHistory {
        revision: Oid,
        url: String,
        from_ref: String,
        to_ref: String,
    },
    /// The promotion gate of the target tier holds the revision (soak, digest, health).
    #[error("{message}")]
    Gated { message: String },
    #[error(
        "{target} is at {current}, which {revision} does not descend from: not a fast-forward (give --force to rewrite {tier})"
    )]
    NotFastForward {
        target: String,
        current: String,
        revision: String,
        tier: String,
    },
    /// Reading or writing the mirror (a bad recorded revision, the history walk, the ref
    /// pushed from).
    #[error("{0}")]
    Git(#[from] git2::Error),
    #[error("the promote task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

fn promote_blocking(
    config: &Config,
    from: &TierConfig,
    to: &TierConfig,
    args: &PromoteArgs,
    mut evidence: Vec<HealthyRecord>,
    last_healthy: Option<Revision>,
) -> Result<(), PromoteError> {
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "gitopsd-promote-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )));
    let mut source = Source::new(&config.source, scratch.0.clone())?;
    let outcome = source.fetch(&[from.git_ref.clone(), to.git_ref.clone()])?;
    // TO's ref may not exist yet: then the promotion creates it.
    let current = match outcome.get(&to.git_ref) {
        Some(Ok(u)) => Some(u.commit),
        _ => None,
    };
    evidence.extend(source.healthy_refs(&from.name));
    let repo = source.repository();

    let revision = match (&args.revision, last_healthy) {
        (Some(r), _) => repo
            .revparse_single(r)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| PromoteError::NoSuchRevision {
                given: r.clone(),
                url: source.url().to_owned(),
                source: e,
            })?
            .id(),
        (None, Some(r)) => Oid::from_str(r.as_str())?,
        (None, None) => match evidence.iter().max_by_key(|h| h.since) {
            Some(h) => Oid::from_str(h.revision.as_str())?,
            None => {
                return Err(PromoteError::NoHealthyRevision {
                    tier: from.name.clone(),
                    url: source.url().to_owned(),
                });
            }
        },
    };
    if repo.find_commit(revision).is_err() {
        return Err(PromoteError::NotInHistory {
            revision,
            url: source.url().to_owned(),
            from_ref: from.git_ref.clone(),
            to_ref: to.git_ref.clone(),
        });
    }
    let sha = Revision::from(revision);
    let digest = if to.gate == crate::config::PromotionGate::BaseDigest {
        source
            .export(revision)
            .ok()
            .and_then(|root| base_digest(&root))
    } else {
        None
    };
    if let Some(hold) = promotion_gate(to, &sha, digest.as_deref(), &evidence, chrono::Utc::now()) {
        return Err(PromoteError::Gated {
            message: hold.message,
        });
    }
    let target = branch_ref(&to.git_ref);
    if current == Some(revision) {
        println!("{target} is already at {}; nothing to promote", sha.short());
        return Ok(());
    }
    let fast_forward = match current {
        None => true,
        Some(c) => repo.graph_descendant_of(revision, c).unwrap_or(false),
    };
    if !fast_forward && !args.force {
        return Err(PromoteError::NotFastForward {
            target,
            current: current
                .map(|c| short(&c.to_string()).to_owned())
                .unwrap_or_default(),
            revision: sha.short().to_owned(),
            tier: to.name.clone(),
        });
    }

    println!(
        "promoting {} -> {} ({target}): {}..{}",
        from.name,
        to.name,
        current
            .map(|c| short(&c.to_string()).to_owned())
            .unwrap_or_else(|| "(new ref)".into()),
        sha.short()
    );
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL)?;
    walk.push(revision)?;
    if let Some(c) = current
        && fast_forward
    {
        let _ = walk.hide(c);
    }
    for oid in walk.flatten().take(200) {
        if let Ok(c) = repo.find_commit(oid) {
            println!(
                "{} {}",
                short(&oid.to_string()),
                c.summary().ok().flatten().unwrap_or_default()
            );
        }
    }
    // libgit2 pushes from a ref: a local one names the commit.
    let local = format!("refs/gitopsd/promote/{}", to.name);
    repo.reference(&local, revision, true, "gitopsd promote")?;
    let plus = if args.force { "+" } else { "" };
    source.push(&[format!("{plus}{local}:{target}")])?;
    println!("pushed {} to {target}", sha.short());
    Ok(())
}

/// A tier's ref as a full ref name: `tier/validation` -> `refs/heads/tier/validation`.
fn branch_ref(git_ref: &str) -> String {
    if git_ref.starts_with("refs/") {
        git_ref.to_owned()
    } else {
        format!("refs/heads/{git_ref}")
    }
}
