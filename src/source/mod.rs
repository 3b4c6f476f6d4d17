//! The source stage: a bare mirror of the config repo, fetched for exactly the refs the tiers
//! follow, and commits exported as plain files for the render stage.
//!
//! Design:
//! - One bare repository under `workdir/mirror` (the daemon's `workdir` is
//!   [`mirror_dir`]: one per source URL, held by one daemon at a time, [`MirrorLock`]). Each followed ref (a branch, a tag, a full
//!   commit sha) is fetched into `refs/gitopsd/follow/<ref>`, so the commit a tier saw last
//!   survives a restart and a failed fetch: the last good state is whatever those refs say.
//! - https and ssh fetches are shallow (depth 1); the local transport of libgit2 cannot do
//!   shallow fetches, so file:// and paths fetch normally. When a shallow fetch leaves it
//!   unknown whether the new commit descends from the old one, the fetch deepens step by step
//!   until it knows; a force-push is reported as a rewrite and still followed.
//! - A followed commit sha is fetched apart from the named refs: most servers refuse a want
//!   that is no advertised tip (protocol v0/v1, which libgit2 speaks). Then every branch and
//!   tag is fetched with full history into `refs/gitopsd/all/` and the commit looked up there;
//!   a commit found nowhere fails its own ref only.
//!
//! - Every network call has a deadline, `source.fetchTimeout`: libgit2's connect and read
//!   timeouts (process-wide, set once by the first [`Source`]: [`set_network_timeouts`]) end
//!   a connection to a server that accepts and then says nothing, for fetches and pushes,
//!   https and ssh alike; the poller also abandons a whole fetch at the deadline and raises
//!   the handle's cancel flag ([`Source::cancel_flag`]), which the progress callbacks read,
//!   so a server that trickles is dropped too.
//!
//! Over 600 lines (barely): [`Source::fetch`] and its steps (want, fetch, deepen, settle,
//! classify the error) are one protocol over one git2 remote; auth, export, polling, backoff
//! and the workdir are the submodules already.
//!
//! Limits: known_hosts lines with hashed host names (`|1|...`) or `@cert-authority` are
//! ignored; a custom CA for https comes from the system store (or `SSL_CERT_FILE`).

mod auth;
mod backoff;
mod error;
mod evidence;
mod export;
mod poll;
mod workdir;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use git2::{AutotagOption, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};
use tracing::{debug, info, info_span, warn};

pub use auth::{DEFAULT_TOKEN_USER, HostKeyRefusal};
pub use backoff::{Backoff, MAX_DELAY, MIN_DELAY};
pub use error::{ExportLimit, SourceError};
pub use evidence::{EVIDENCE_PREFIX, HEALTHY_PREFIX, healthy_ref};
pub use export::KEEP_EXPORTS;
pub use poll::{FetchReport, Fetcher, Poller};
pub use workdir::{MirrorLock, mirror_dir};

use crate::config::{GitAuth, RepoUrlKind, SourceConfig};

/// Where each followed ref is kept in the mirror.
const FOLLOW_PREFIX: &str = "refs/gitopsd/follow/";

/// Depths tried, in turn, when a shallow fetch cannot tell whether a move was a rewrite; the
/// last (libgit2's "unshallow") fetches the whole history.
const DEEPEN_STEPS: [i32; 3] = [32, 1024, UNSHALLOW];

/// libgit2's fetch depth meaning "the whole history" (`GIT_FETCH_DEPTH_UNSHALLOW`).
const UNSHALLOW: i32 = i32::MAX;

/// Where every advertised branch and tag is fetched when a followed commit must be found in
/// their history (the server refused the commit by sha).
const ALL_PREFIX: &str = "refs/gitopsd/all/";

/// The config repo mirror.
pub struct Source {
    url: String,
    kind: RepoUrlKind,
    auth: GitAuth,
    token_user: String,
    workdir: PathBuf,
    repo: Repository,
    export_limits: crate::config::ExportLimits,
    /// Raised by whoever gave up on the fetch running on this handle (the poller at the
    /// deadline, or at shutdown); libgit2's progress callbacks read it and abort.
    cancel: Arc<AtomicBool>,
    fetch_timeout: Duration,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.url)
            .field("workdir", &self.workdir)
            .finish_non_exhaustive()
    }
}

/// What one fetch found, one entry per requested ref, in the order asked.
#[derive(Debug)]
pub struct FetchOutcome {
    pub refs: Vec<RefOutcome>,
}

#[derive(Debug)]
pub struct RefOutcome {
    pub git_ref: String,
    /// The update, or why this ref could not be followed (it disappeared, say); the other
    /// refs are unaffected and this one keeps its last good commit ([`Source::last_good`]).
    pub result: Result<RefUpdate, SourceError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefUpdate {
    pub commit: Oid,
    /// The commit before this fetch; `None` the first time the ref is seen.
    pub previous: Option<Oid>,
    pub changed: bool,
    /// The new commit does not descend from the previous one: history was rewritten
    /// (force-push). It is followed anyway: it is what the repository says now.
    pub rewrite: bool,
}

impl FetchOutcome {
    pub fn get(&self, git_ref: &str) -> Option<&Result<RefUpdate, SourceError>> {
        self.refs
            .iter()
            .find(|r| r.git_ref == git_ref)
            .map(|r| &r.result)
    }
}

/// How a config ref maps to what the remote advertises.
enum Want {
    /// A ref name on the remote, e.g. `refs/heads/main`.
    Remote(String),
    Commit(Oid),
}

impl Source {
    /// Opens (or creates) the bare mirror under `workdir`; touches no network.
    pub fn new(config: &SourceConfig, workdir: PathBuf) -> Result<Source, SourceError> {
        Source::with_token_user(config, workdir, DEFAULT_TOKEN_USER)
    }

    /// As [`Source::new`], with another user name to send beside the token.
    pub fn with_token_user(
        config: &SourceConfig,
        workdir: PathBuf,
        token_user: &str,
    ) -> Result<Source, SourceError> {
        set_network_timeouts(config.fetch_timeout);
        let url = redact(config.url.as_str());
        let path = workdir.join("mirror");
        let mirror_err = |source| SourceError::Mirror {
            url: url.clone(),
            path: path.clone(),
            source,
        };
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                std::fs::create_dir_all(&workdir).map_err(|e| {
                    mirror_err(git2::Error::from_str(&format!(
                        "cannot create the work directory: {e}"
                    )))
                })?;
                Repository::init_bare(&path).map_err(mirror_err)?
            }
            Err(e) => return Err(mirror_err(e)),
        };
        Ok(Source {
            url,
            kind: config.url.kind,
            auth: config.auth.clone(),
            token_user: token_user.to_owned(),
            workdir,
            repo,
            export_limits: config.export_limits,
            cancel: Arc::new(AtomicBool::new(false)),
            fetch_timeout: config.fetch_timeout,
        })
    }

    /// The flag that cancels the fetch running on this handle: set it from another thread and
    /// the fetch stops at libgit2's next progress callback (or its read timeout, whichever is
    /// first) with [`SourceError::Cancelled`]. Whoever raises it lowers it before the next
    /// fetch on this handle (the poller does).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// `source.fetchTimeout`: how long the poller lets one fetch run.
    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// Removes the lock files (`*.lock`) a process stopped mid-update left in the mirror under
    /// `workdir` (its refs, `packed-refs`, `shallow`, `config`): libgit2 takes a lock by
    /// creating the file exclusively, so one left behind fails every later update of that ref.
    /// Only for start-up, before any [`Source`] on `workdir` fetches: the daemon owns its
    /// workdir and runs one poller. Returns the files removed.
    pub fn clear_stale_locks(workdir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mirror = workdir.join("mirror");
        let mut removed = Vec::new();
        let mut dirs = vec![mirror.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let kind = entry.file_type()?;
                // Refs live under refs/; the other lockable files sit at the top.
                if kind.is_dir() && (dir != mirror || entry.file_name() == "refs") {
                    dirs.push(path);
                } else if kind.is_file() && path.extension().is_some_and(|e| e == "lock") {
                    std::fs::remove_file(&path)?;
                    removed.push(path);
                }
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// The URL as it appears in logs and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The commit `git_ref` pointed to at the last successful fetch, if any.
    pub fn last_good(&self, git_ref: &str) -> Option<Oid> {
        self.repo
            .find_reference(&follow_ref(git_ref))
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .ok()
    }

    /// Fetches `refs` (branches, tags or full commit shas) and resolves each to a commit.
    ///
    /// An error means nothing was fetched (unreachable, auth refused, corrupt pack): every
    /// ref keeps its last good commit. A ref missing on the remote (or a commit reachable from
    /// no branch or tag) is an error in its own entry of the outcome only.
    pub fn fetch(&mut self, refs: &[String]) -> Result<FetchOutcome, SourceError> {
        let span = info_span!("git_fetch", url = %self.url, refs = refs.len());
        let _enter = span.enter();
        let refs_label = refs.join(", ");
        let creds = auth::load(&self.auth, self.kind, &self.token_user, &self.url)?;
        let port = ssh_port(&self.url);

        let advertised = self.list_remote(&creds, port, &refs_label)?;
        let mut results: Vec<Option<Result<RefUpdate, SourceError>>> = Vec::new();
        let mut specs: Vec<Option<String>> = Vec::new();
        let mut refspecs = Vec::new();
        // (index into `refs`, commit) of the commit wants the mirror lacks.
        let mut missing: Vec<(usize, Oid)> = Vec::new();
        let mut previous = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            previous.push(self.last_good(r));
            match want(r, &advertised) {
                Some(Want::Remote(name)) => {
                    let spec = format!("+{name}:{}", follow_ref(r));
                    refspecs.push(spec.clone());
                    specs.push(Some(spec));
                    results.push(None);
                }
                Some(Want::Commit(oid)) => {
                    // A commit never changes; fetch it only if the mirror lacks it.
                    if self.repo.find_commit(oid).is_err() {
                        missing.push((i, oid));
                    }
                    specs.push(None);
                    results.push(None);
                }
                None => {
                    specs.push(None);
                    results.push(Some(Err(SourceError::RefNotFound {
                        url: self.url.clone(),
                        git_ref: r.clone(),
                    })));
                }
            }
        }
        if !refspecs.is_empty() {
            self.fetch_refspecs(&refspecs, self.initial_depth(), &creds, port, &refs_label)?;
        }
        // Healthy evidence of other daemons' tiers: a failure here costs only that evidence.
        if advertised.keys().any(|k| k.starts_with(HEALTHY_PREFIX)) {
            let spec = [format!("+{HEALTHY_PREFIX}*:{EVIDENCE_PREFIX}*")];
            if let Err(e) =
                self.fetch_refspecs(&spec, self.initial_depth(), &creds, port, "healthy refs")
            {
                warn!(error = %e, "cannot fetch the healthy refs; promotion gates read the cluster state only");
            }
        }
        // Commit wants go in a fetch of their own, after the named refs: many servers refuse
        // a want that is not an advertised tip, and that refusal must not cost the branches
        // and tags their update.
        if !missing.is_empty() {
            let commits: Vec<Oid> = missing.iter().map(|&(_, oid)| oid).collect();
            for (i, err) in self.fetch_commits(&commits, &creds, port) {
                if let Some(&(r, _)) = missing.get(i) {
                    results[r] = Some(Err(err));
                }
            }
        }

        let mut out = Vec::new();
        for (((r, prev), result), spec) in refs.iter().zip(previous).zip(results).zip(specs) {
            let result = match result {
                Some(err) => {
                    let error = err.as_ref().err().map(ToString::to_string);
                    warn!(git_ref = %r, last_good = ?prev.map(|o| o.to_string()), error = ?error, "cannot follow the ref; keeping the last good commit");
                    err
                }
                None => self.settle(r, prev, spec.as_deref(), &creds, port),
            };
            out.push(RefOutcome {
                git_ref: r.clone(),
                result,
            });
        }
        Ok(FetchOutcome { refs: out })
    }

    /// Fetches commits named by full sha; returns, by index into `commits`, those still
    /// unavailable afterwards with why.
    ///
    /// First asks for the shas themselves (servers that allow unadvertised wants, and the
    /// local transport). When that is refused or leaves a commit missing, fetches every
    /// advertised branch and tag with their whole history into [`ALL_PREFIX`], since a
    /// commit that is no tip can only come as history of one.
    fn fetch_commits(
        &self,
        commits: &[Oid],
        creds: &auth::Credentials,
        port: Option<u16>,
    ) -> Vec<(usize, SourceError)> {
        let label = commits
            .iter()
            .map(Oid::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let specs: Vec<String> = commits
            .iter()
            .map(|oid| format!("+{oid}:{}", follow_ref(&oid.to_string())))
            .collect();
        if let Err(e) = self.fetch_refspecs(&specs, self.initial_depth(), creds, port, &label) {
            debug!(commits = %label, error = %e, "the server refused the commit wants; fetching all branches and tags instead");
        }
        let absent = |c: &Oid| self.repo.find_commit(*c).is_err();
        if !commits.iter().any(absent) {
            return Vec::new();
        }
        let all = [
            format!("+refs/heads/*:{ALL_PREFIX}heads/*"),
            format!("+refs/tags/*:{ALL_PREFIX}tags/*"),
        ];
        // A shallow mirror must be unshallowed: the server treats its shallow commits as
        // the end of history and would not send their ancestors otherwise.
        let depth = self.initial_depth().map(|_| UNSHALLOW);
        let fallback = self.fetch_refspecs(&all, depth, creds, port, &label);
        commits
            .iter()
            .enumerate()
            .filter(|(_, c)| absent(c))
            .map(|(i, c)| {
                let err = match &fallback {
                    Err(e) => e.duplicate(&self.url),
                    Ok(()) => SourceError::CommitNotReachable {
                        url: self.url.clone(),
                        commit: c.to_string(),
                    },
                };
                (i, err)
            })
            .collect()
    }

    /// Resolves one ref after the fetch and decides whether its move was a rewrite.
    fn settle(
        &self,
        r: &str,
        prev: Option<Oid>,
        spec: Option<&str>,
        creds: &auth::Credentials,
        port: Option<u16>,
    ) -> Result<RefUpdate, SourceError> {
        let not_a_commit = |source| SourceError::NotACommit {
            url: self.url.clone(),
            git_ref: r.to_owned(),
            source,
        };
        let commit = match r.parse::<Oid>().ok().filter(|_| is_full_sha(r)) {
            Some(oid) => {
                let c = self.repo.find_commit(oid).map_err(not_a_commit)?.id();
                self.repo
                    .reference(&follow_ref(r), c, true, "gitopsd: follow commit")
                    .map_err(not_a_commit)?;
                c
            }
            None => self
                .repo
                .find_reference(&follow_ref(r))
                .and_then(|x| x.peel_to_commit())
                .map_err(not_a_commit)?
                .id(),
        };
        let changed = prev != Some(commit);
        let mut rewrite = false;
        if let (true, Some(old), Some(spec)) = (changed, prev, spec) {
            rewrite = !self.descends(r, spec, commit, old, creds, port)?;
        }
        if rewrite {
            warn!(git_ref = %r, old = %prev.map(|o| o.to_string()).unwrap_or_default(), new = %commit, "history of a followed ref was rewritten (force-push); following the new commit");
        } else if changed {
            info!(git_ref = %r, new = %commit, "followed ref moved");
        } else {
            debug!(git_ref = %r, commit = %commit, "followed ref unchanged");
        }
        Ok(RefUpdate {
            commit,
            previous: prev,
            changed,
            rewrite,
        })
    }

    /// Whether `new` descends from `old`, deepening a shallow mirror until the answer is sure.
    /// Deepening fetches the ref again (`spec`), not the commit: servers rarely allow wants
    /// of bare commit ids.
    fn descends(
        &self,
        r: &str,
        spec: &str,
        new: Oid,
        old: Oid,
        creds: &auth::Credentials,
        port: Option<u16>,
    ) -> Result<bool, SourceError> {
        let mut steps = DEEPEN_STEPS.iter();
        loop {
            if self.repo.graph_descendant_of(new, old).unwrap_or(false) {
                return Ok(true);
            }
            if !self.reaches_shallow_boundary(new) {
                return Ok(false);
            }
            let Some(&depth) = steps.next() else {
                return Ok(false);
            };
            debug!(git_ref = %r, depth, "deepening the shallow mirror to tell a fast-forward from a rewrite");
            self.fetch_refspecs(&[spec.to_owned()], Some(depth), creds, port, r)?;
        }
    }

    /// Whether the history below `commit` is cut off by a shallow fetch (rather than ending
    /// at a root commit), i.e. whether more history could still reveal `old` in it.
    fn reaches_shallow_boundary(&self, commit: Oid) -> bool {
        let shallow = std::fs::read_to_string(self.repo.path().join("shallow")).unwrap_or_default();
        let cut: Vec<Oid> = shallow.lines().filter_map(|l| l.parse().ok()).collect();
        if cut.is_empty() {
            return false;
        }
        let Ok(mut walk) = self.repo.revwalk() else {
            return true;
        };
        if walk.push(commit).is_err() {
            return true;
        }
        walk.flatten().any(|c| cut.contains(&c))
    }

    fn initial_depth(&self) -> Option<i32> {
        // libgit2's local transport refuses shallow fetches.
        match self.kind {
            RepoUrlKind::Https | RepoUrlKind::Ssh => Some(1),
            RepoUrlKind::File => None,
        }
    }

    /// The refs the remote advertises, by name.
    fn list_remote(
        &self,
        creds: &auth::Credentials,
        port: Option<u16>,
        refs_label: &str,
    ) -> Result<HashMap<String, Oid>, SourceError> {
        let trouble = Rc::new(RefCell::new(auth::CallbackTrouble::default()));
        let result = (|| {
            let mut remote = self.repo.remote_anonymous(&self.url)?;
            let mut cb = auth::callbacks(creds, port, trouble.clone());
            self.watch_cancel(&mut cb);
            let conn = remote.connect_auth(Direction::Fetch, Some(cb), None)?;
            let heads = conn
                .list()?
                .iter()
                .map(|h| (h.name().to_owned(), h.oid()))
                .collect::<HashMap<_, _>>();
            Ok(heads)
        })();
        result.map_err(|e| self.classify(e, &trouble.borrow(), refs_label))
    }

    fn fetch_refspecs(
        &self,
        refspecs: &[String],
        depth: Option<i32>,
        creds: &auth::Credentials,
        port: Option<u16>,
        refs_label: &str,
    ) -> Result<(), SourceError> {
        let trouble = Rc::new(RefCell::new(auth::CallbackTrouble::default()));
        let result = (|| {
            let mut remote = self.repo.remote_anonymous(&self.url)?;
            if self.cancel.load(Ordering::SeqCst) {
                return Err(git2::Error::from_str("cancelled"));
            }
            let mut fo = FetchOptions::new();
            let mut cb = auth::callbacks(creds, port, trouble.clone());
            self.watch_cancel(&mut cb);
            fo.remote_callbacks(cb);
            // Tags are fetched only when a tier follows one, by its own refspec.
            fo.download_tags(AutotagOption::None);
            fo.update_fetchhead(false);
            if let Some(d) = depth {
                fo.depth(d);
            }
            remote.fetch(refspecs, Some(&mut fo), Some("gitopsd fetch"))
        })();
        result.map_err(|e| self.classify(e, &trouble.borrow(), refs_label))
    }

    /// Progress callbacks that abort the transfer once the cancel flag is up (libgit2 calls
    /// them as data arrives; a server that sends nothing is ended by the read timeout).
    fn watch_cancel(&self, cb: &mut RemoteCallbacks<'_>) {
        let c = self.cancel.clone();
        cb.transfer_progress(move |_| !c.load(Ordering::Relaxed));
        let c = self.cancel.clone();
        cb.sideband_progress(move |_| !c.load(Ordering::Relaxed));
        let c = self.cancel.clone();
        cb.update_tips(move |_, _, _| !c.load(Ordering::Relaxed));
    }

    fn classify(&self, e: git2::Error, t: &auth::CallbackTrouble, refs: &str) -> SourceError {
        let url = self.url.clone();
        let refs = refs.to_owned();
        if self.cancel.load(Ordering::SeqCst) {
            return SourceError::Cancelled { url, refs };
        }
        if let Some((host, reason)) = &t.host_key {
            return SourceError::HostKey {
                url,
                host: host.clone(),
                reason: reason.clone(),
                refs,
            };
        }
        if t.auth_refused || e.code() == git2::ErrorCode::Auth {
            return SourceError::AuthRefused {
                url,
                refs,
                source: e,
            };
        }
        SourceError::Fetch {
            url,
            refs,
            source: e,
        }
    }
}

/// Sets libgit2's process-wide connect and read timeouts to `timeout`, once per process (the
/// first [`Source`] made decides; a daemon has one config). They bound every socket wait of
/// the https and ssh transports (libgit2 >= 1.7 passes the read timeout to libssh2 too), for
/// fetches and pushes alike: without them a server that accepts and never answers holds the
/// fetch forever.
pub fn set_network_timeouts(timeout: Duration) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: git_libgit2_opts writes two plain ints that libgit2 reads when it opens a
        // socket. `Once` makes this the single write, done when the first Source is built,
        // that is before this process runs any fetch or push (they all go through a Source).
        #[allow(unsafe_code)]
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(ms)
                .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(ms))
        };
        match set {
            Ok(()) => debug!(timeout_ms = ms, "git connect and read timeouts set"),
            Err(e) => warn!(error = %e, "cannot set the git connect and read timeouts; a git server that stops answering holds a fetch until the poller abandons it"),
        }
    });
}

fn follow_ref(r: &str) -> String {
    format!("{FOLLOW_PREFIX}{}", r.strip_prefix("refs/").unwrap_or(r))
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A branch wins over a tag of the same name, as `git checkout NAME` does.
fn want(r: &str, advertised: &HashMap<String, Oid>) -> Option<Want> {
    if is_full_sha(r) {
        return r.parse().ok().map(Want::Commit);
    }
    let candidates = if r.starts_with("refs/") {
        vec![r.to_owned()]
    } else {
        vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")]
    };
    candidates
        .into_iter()
        .find(|c| advertised.contains_key(c))
        .map(Want::Remote)
}

/// The ssh port of `ssh://[user@]host[:port]/path`; `None` means the default (22).
fn ssh_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ssh://")?;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (_, port) = hostport.rsplit_once(':')?;
    if hostport.ends_with(']') {
        return None; // `[::1]` without a port
    }
    port.parse().ok()
}

/// Drops a `user:password@` from a URL; the config already refuses them, this is a second
/// fence for errors and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
