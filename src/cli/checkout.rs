//! The repo as a one-shot command reads it: files on disk, or a ref fetched into a scratch
//! mirror and exported; the tier rendered from it, and which kinds are namespaced.

use super::*;
use crate::revision::Revision;

/// A config repo read once, at one revision, for `render` and `validate`.
pub(super) struct Checkout {
    root: PathBuf,
    /// The commit, or `None` for files read as they are on disk.
    revision: Option<Revision>,
    /// A temporary mirror, removed when the command ends.
    _scratch: Option<Scratch>,
}

pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads the repo at `git_ref`: a directory without a ref is read as it is on disk; anything
/// else is fetched into a temporary mirror by the source stage and exported.
pub(super) fn checkout(
    source: &SourceConfig,
    repo: Option<&str>,
    git_ref: Option<&str>,
) -> Result<Checkout, CliError> {
    let url = repo.unwrap_or(source.url.as_str());
    if git_ref.is_none() && Path::new(url).is_dir() {
        return Ok(Checkout {
            root: PathBuf::from(url),
            revision: None,
            _scratch: None,
        });
    }
    let git_ref = git_ref.unwrap_or("main").to_owned();
    let mut source = source.clone();
    source.url = url.parse().map_err(|source| CliError::RepoUrl {
        url: url.to_owned(),
        source,
    })?;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "gitopsd-checkout-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )));
    let mut mirror = crate::source::Source::new(&source, scratch.0.clone())?;
    let outcome = mirror.fetch(std::slice::from_ref(&git_ref))?;
    let result = outcome
        .refs
        .into_iter()
        .find(|r| r.git_ref == git_ref)
        .map(|r| r.result);
    let update = match result {
        Some(Ok(update)) => update,
        Some(Err(e)) => return Err(e.into()),
        None => {
            return Err(CliError::NothingFetched {
                url: url.to_owned(),
                git_ref,
            });
        }
    };
    let root = mirror.export(update.commit)?;
    Ok(Checkout {
        root,
        revision: Some(Revision::from(update.commit)),
        _scratch: Some(scratch),
    })
}

/// Checks out the repo at `git_ref` and renders `tier`, off the async runtime (git2 and the
/// file reads block). Returns the set and the commit it came from (`None`: files on disk).
pub(super) async fn render_at(
    source: SourceConfig,
    repo: Option<String>,
    git_ref: Option<String>,
    tier: String,
    limits: Limits,
    scopes: Arc<KindScopes>,
) -> Result<(DesiredSet, Option<Revision>), CliError> {
    tokio::task::spawn_blocking(move || {
        let checkout = checkout(&source, repo.as_deref(), git_ref.as_deref())?;
        let set = crate::render::render_tier(&checkout.root, &tier, &limits, &scopes)?;
        Ok((set, checkout.revision))
    })
    .await
    .map_err(|source| CliError::Task {
        task: "render",
        source,
    })?
}

/// Which kinds are namespaced, for a command run once: the discovery of the cluster
/// `--kubeconfig` names (an error when it does not answer), else of the cluster kube infers
/// (in-cluster, KUBECONFIG), else, and with `--offline`, the built-in kinds, with a note.
/// The second value is a note for the person, when no cluster could be asked.
pub(super) async fn kind_scopes(
    kubeconfig: Option<&Path>,
    offline: bool,
) -> Result<(Arc<KindScopes>, Option<String>, Option<kube::Client>), CliError> {
    if offline {
        return Ok((Arc::new(KindScopes::builtin()), None, None));
    }
    let conn = match crate::cluster::connect(kubeconfig).await {
        Ok(c) => c,
        Err(e) if kubeconfig.is_some() => return Err(e.into()),
        Err(e) => {
            let note = format!(
                "note: no cluster to ask which kinds are namespaced ({e}); using the built-in kinds of Kubernetes {} (as --offline)",
                crate::render::builtin_kubernetes_version()
            );
            return Ok((Arc::new(KindScopes::builtin()), Some(note), None));
        }
    };
    let scopes = crate::discovery::discover(&conn.client)
        .await
        .map_err(|source| CliError::Discovery {
            server: conn.server.clone(),
            source,
        })?;
    Ok((Arc::new(scopes), None, Some(conn.client)))
}

/// The source section to use when there is no config file: just the repo, no credentials.
pub(super) fn bare_source(repo: Option<&str>) -> Result<SourceConfig, CliError> {
    let url = repo.ok_or(CliError::NoRepo)?;
    Ok(SourceConfig {
        url: url.parse().map_err(|source| CliError::RepoUrl {
            url: url.to_owned(),
            source,
        })?,
        auth: Default::default(),
        interval: std::time::Duration::from_secs(60),
        fetch_timeout: crate::config::default_fetch_timeout(),
        webhook_secret_file: None,
        publish_healthy: false,
        export_limits: Default::default(),
    })
}
