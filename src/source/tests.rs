//! The source stage against real repositories: an upstream made with the git CLI in a temp
//! dir, pushed to by the test, fetched over the local transport.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::config::{GitAuth, SourceConfig};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare "server" repository and a working clone the test commits in and pushes from.
struct Upstream {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = dir.path().join("config.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "config.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]);
        Upstream {
            _dir: dir,
            bare,
            work,
        }
    }

    fn commit(&self, file: &str, content: &str) -> String {
        let path = self.work.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write file");
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("change {file}")],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self, spec: &str) {
        git(&self.work, &["push", "-q", "--force", "origin", spec]);
    }

    fn config(&self) -> SourceConfig {
        source_config(&self.bare.to_string_lossy())
    }
}

fn source_config(url: &str) -> SourceConfig {
    SourceConfig {
        url: url.parse().expect("repo url"),
        auth: GitAuth::default(),
        interval: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(60),
        webhook_secret_file: None,
        publish_healthy: false,
        export_limits: Default::default(),
    }
}

fn refs(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn update(outcome: &FetchOutcome, r: &str) -> RefUpdate {
    match outcome.get(r) {
        Some(Ok(u)) => *u,
        other => panic!("ref {r}: {other:?}"),
    }
}

#[test]
fn follows_a_branch_an_annotated_tag_and_a_commit_and_reports_no_change_when_nothing_moved() {
    let up = Upstream::new();
    let first = up.commit("base/a.yaml", "a: 1\n");
    up.push("main");
    git(&up.work, &["tag", "-a", "-m", "release", "v1.0.0"]);
    up.push("v1.0.0");
    let second = up.commit("base/a.yaml", "a: 2\n");
    up.push("main:refs/heads/tier/validation");

    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let wanted = refs(&["main", "v1.0.0", "tier/validation", &first]);
    let out = source.fetch(&wanted).expect("fetch");
    assert_eq!(update(&out, "main").commit.to_string(), first);
    assert_eq!(update(&out, "v1.0.0").commit.to_string(), first);
    assert_eq!(update(&out, "tier/validation").commit.to_string(), second);
    assert_eq!(update(&out, &first).commit.to_string(), first);
    for r in &wanted {
        let u = update(&out, r);
        assert!(
            u.changed && !u.rewrite && u.previous.is_none(),
            "{r}: {u:?}"
        );
    }

    let again = source.fetch(&wanted).expect("second fetch");
    for r in &wanted {
        let u = update(&again, r);
        assert!(!u.changed && !u.rewrite, "{r}: {u:?}");
        assert_eq!(u.previous, Some(u.commit));
    }
}

#[test]
fn a_fast_forward_is_a_change_and_a_force_push_is_reported_as_a_rewrite_and_followed() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    source.fetch(&refs(&["main"])).expect("fetch");

    let b = up.commit("x.yaml", "v: b\n");
    up.push("main");
    let ff = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main");
    assert_eq!(ff.commit.to_string(), b);
    assert_eq!(ff.previous.map(|o| o.to_string()), Some(a.clone()));
    assert!(ff.changed && !ff.rewrite, "{ff:?}");

    // Rewrite history: drop b, commit c on top of a, force-push.
    git(&up.work, &["reset", "-q", "--hard", &a]);
    let c = up.commit("x.yaml", "v: c\n");
    up.push("+main");
    let rw = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main");
    assert_eq!(rw.commit.to_string(), c, "the rewritten ref is followed");
    assert_eq!(rw.previous.map(|o| o.to_string()), Some(b));
    assert!(rw.changed && rw.rewrite, "{rw:?}");
    assert_eq!(source.last_good("main").map(|o| o.to_string()), Some(c));
}

#[test]
fn a_ref_that_disappears_is_an_error_of_its_own_and_keeps_its_last_good_commit() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    up.push("main:refs/heads/tier/validation");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let wanted = refs(&["main", "tier/validation"]);
    source.fetch(&wanted).expect("fetch");

    git(
        &up.work,
        &["push", "-q", "origin", ":refs/heads/tier/validation"],
    );
    let out = source
        .fetch(&wanted)
        .expect("fetch still works for the other ref");
    assert!(!update(&out, "main").changed);
    let err = match out.get("tier/validation") {
        Some(Err(e)) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        err,
        format!(
            "ref \"tier/validation\" not found in {} (neither a branch nor a tag there)",
            up.bare.display()
        )
    );
    assert_eq!(
        source.last_good("tier/validation").map(|o| o.to_string()),
        Some(a)
    );
}

#[test]
fn a_commit_that_exists_nowhere_is_an_error_of_its_own_and_the_branch_still_resolves() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let nowhere = "0123456789abcdef0123456789abcdef01234567";
    let out = source
        .fetch(&refs(&["main", nowhere]))
        .expect("the branch is fetched");
    assert_eq!(update(&out, "main").commit.to_string(), a);
    match out.get(nowhere) {
        Some(Err(e @ SourceError::CommitNotReachable { .. })) => assert_eq!(
            e.to_string(),
            format!(
                "commit {nowhere} is not reachable from any branch or tag of {} (or the server refused it)",
                up.bare.display()
            )
        ),
        other => panic!("expected CommitNotReachable, got {other:?}"),
    }
    assert_eq!(source.last_good(nowhere), None);
}

#[test]
fn an_unreachable_repository_fails_the_fetch_naming_the_url_and_keeps_the_last_good_commit() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    source.fetch(&refs(&["main"])).expect("fetch");

    let moved = up.bare.with_extension("moved");
    std::fs::rename(&up.bare, &moved).expect("move the upstream away");
    let err = source.fetch(&refs(&["main"])).expect_err("fetch must fail");
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!(
            "fetch of main from {} failed: ",
            up.bare.display()
        )),
        "{msg}"
    );
    assert_eq!(source.last_good("main").map(|o| o.to_string()), Some(a));
}

#[test]
fn a_corrupt_repository_fails_the_fetch_and_keeps_the_last_good_commit() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    source.fetch(&refs(&["main"])).expect("fetch");

    // A new commit upstream whose objects are then damaged on disk.
    let b = up.commit(
        "x.yaml",
        "v: b, with enough text to compress\n".repeat(50).as_str(),
    );
    up.push("main");
    git(&up.bare, &["repack", "-q", "-a", "-d"]);
    let pack_dir = up.bare.join("objects/pack");
    for entry in std::fs::read_dir(&pack_dir).expect("pack dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pack") {
            let mut bytes = std::fs::read(&path).expect("read pack");
            // Keep the header, wreck the objects.
            for b in bytes.iter_mut().skip(12).take(400) {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).expect("write pack");
        }
    }
    let err = source
        .fetch(&refs(&["main"]))
        .expect_err("fetch of a corrupt repository must fail");
    assert!(
        err.to_string().contains(&up.bare.display().to_string()),
        "{err}"
    );
    assert_eq!(source.last_good("main").map(|o| o.to_string()), Some(a));
    assert_ne!(Some(b), source.last_good("main").map(|o| o.to_string()));
}

#[test]
fn export_writes_plain_files_once_and_copies_symlinks_inside_the_tree() {
    let up = Upstream::new();
    up.commit("base/a.yaml", "a: 1\n");
    std::fs::create_dir_all(up.work.join("tiers/exp")).expect("mkdir");
    std::os::unix::fs::symlink("../../base/a.yaml", up.work.join("tiers/exp/a.yaml"))
        .expect("symlink");
    let c = up.commit("tiers/exp/tier.yaml", "namespace: shop-exp\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let commit = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;
    assert_eq!(commit.to_string(), c);

    let dir = source.export(commit).expect("export");
    assert_eq!(dir, work.path().join("revisions").join(&c));
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("read exported file");
    assert_eq!(read("base/a.yaml"), "a: 1\n");
    assert_eq!(read("tiers/exp/tier.yaml"), "namespace: shop-exp\n");
    let link = dir.join("tiers/exp/a.yaml");
    let meta = std::fs::symlink_metadata(&link).expect("stat");
    assert!(meta.file_type().is_file(), "a regular file, not a symlink");
    assert_eq!(read("tiers/exp/a.yaml"), "a: 1\n");

    // A second export reuses the directory (a file added by hand survives).
    std::fs::write(dir.join("marker"), "").expect("marker");
    assert_eq!(source.export(commit).expect("export again"), dir);
    assert!(dir.join("marker").exists());
    // No temp dirs are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(work.path().join("revisions"))
        .expect("read revisions")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn export_refuses_a_symlink_that_leaves_the_tree_and_names_it() {
    let up = Upstream::new();
    std::fs::create_dir_all(up.work.join("base")).expect("mkdir");
    std::os::unix::fs::symlink("../../../etc/passwd", up.work.join("base/secrets.yaml"))
        .expect("symlink");
    let c = up.commit("base/a.yaml", "a: 1\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let commit = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;

    let err = source.export(commit).expect_err("export must refuse");
    assert_eq!(
        err.to_string(),
        format!(
            "commit {c} of {}: symlink base/secrets.yaml points outside the repository (to \"../../../etc/passwd\")",
            up.bare.display()
        )
    );
    let revisions = work.path().join("revisions");
    assert!(!revisions.join(&c).exists(), "nothing half-written");
    let left = std::fs::read_dir(&revisions).expect("read").count();
    assert_eq!(left, 0, "the temp dir is removed");
}

#[test]
fn pruning_keeps_revisions_in_use_and_the_newest_few() {
    let up = Upstream::new();
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let mut commits = Vec::new();
    for i in 0..6 {
        up.commit("x.yaml", &format!("v: {i}\n"));
        up.push("main");
        let c = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;
        source.export(c).expect("export");
        commits.push(c);
        // Directory mtimes order the exports; keep them apart on coarse clocks.
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(work.path().join("revisions"))
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let names = |cs: &[Oid]| -> Vec<String> {
        let mut v: Vec<String> = cs.iter().map(Oid::to_string).collect();
        v.sort();
        v
    };
    // Each export pruned as it went: the followed commit and the KEEP_EXPORTS newest others.
    assert_eq!(left(), names(&commits[6 - KEEP_EXPORTS - 1..]));
    // A revision in use (an older tier's) is kept however old it is.
    assert_eq!(source.prune_exports(&[commits[2]]).expect("prune"), 0);
    assert_eq!(source.prune_exports(&[]).expect("prune"), 1);
    assert_eq!(left(), names(&commits[6 - KEEP_EXPORTS..]));
}

#[test]
fn ssh_ports_and_redaction() {
    assert_eq!(
        ssh_port("ssh://git@127.0.0.1:2222/srv/config.git"),
        Some(2222)
    );
    assert_eq!(ssh_port("ssh://git@example.com/config.git"), None);
    assert_eq!(ssh_port("git@example.com:config.git"), None);
    assert_eq!(
        redact("https://user:secret@example.com/a.git"),
        "https://user@example.com/a.git"
    );
    assert_eq!(redact("/srv/config.git"), "/srv/config.git");
}

/// A commit whose trees name one blob `fanout` times per level, `levels` deep: a few KiB in
/// git, `fanout^levels` files on disk. Made with git2 in the bare upstream (the git CLI would
/// need the files on disk first).
fn fanout_commit(bare: &Path, blob_bytes: usize, fanout: usize, levels: usize) -> String {
    let repo = git2::Repository::open_bare(bare).expect("open bare");
    let blob = repo.blob(&vec![b'x'; blob_bytes]).expect("blob");
    let mut b = repo.treebuilder(None).expect("treebuilder");
    for i in 0..fanout {
        b.insert(format!("f{i}.yaml"), blob, 0o100644)
            .expect("insert");
    }
    let mut tree = b.write().expect("tree");
    for _ in 1..levels {
        let mut b = repo.treebuilder(None).expect("treebuilder");
        for i in 0..fanout {
            b.insert(format!("d{i}"), tree, 0o040000).expect("insert");
        }
        tree = b.write().expect("tree");
    }
    let tree = repo.find_tree(tree).expect("find tree");
    let sig = git2::Signature::now("t", "t@example.com").expect("sig");
    let parent = repo
        .find_reference("refs/heads/main")
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "fan out",
        &tree,
        &parents,
    )
    .expect("commit")
    .to_string()
}

#[test]
fn export_limits_refuse_a_commit_that_names_one_blob_many_times_before_writing() {
    let up = Upstream::new();
    let good = up.commit("base/a.yaml", "a: 1\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut config = up.config();
    config.export_limits = crate::config::ExportLimits {
        max_bytes: 4 * 1024 * 1024,
        max_files: 1000,
    };
    let mut source = Source::new(&config, work.path().to_owned()).expect("source");
    let c = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;
    assert_eq!(c.to_string(), good);
    source.export(c).expect("the small commit exports");
    let revisions = work.path().join("revisions");
    let before: Vec<_> = std::fs::read_dir(&revisions)
        .expect("read")
        .flatten()
        .map(|e| e.file_name())
        .collect();

    // 64 KiB named 100 times: 6.4 MB from one blob.
    let bytes = fanout_commit(&up.bare, 64 * 1024, 100, 1);
    let c = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;
    assert_eq!(c.to_string(), bytes);
    let err = source.export(c).expect_err("over maxBytes").to_string();
    assert!(
        err.contains(&bytes) && err.contains("source.exportLimits.maxBytes = 4194304"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    // Ten levels of ten: 10^10 files; refused at the 1001st without walking the rest.
    let files = fanout_commit(&up.bare, 1, 10, 10);
    let c = update(&source.fetch(&refs(&["main"])).expect("fetch"), "main").commit;
    let err = source.export(c).expect_err("over maxFiles").to_string();
    assert!(
        err.contains(&files) && err.contains("source.exportLimits.maxFiles = 1000"),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir(&revisions)
        .expect("read")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing written, nothing pruned");
}

#[test]
fn lock_files_left_by_a_fetch_killed_mid_update_are_cleared_at_start_up() {
    let up = Upstream::new();
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    source.fetch(&refs(&["main"])).expect("first fetch");
    // A process stopped while libgit2 updated the ref leaves its lock file behind.
    let lock = work
        .path()
        .join("mirror")
        .join("refs/gitopsd/follow/main.lock");
    std::fs::write(&lock, format!("{a}\n")).expect("write the lock");
    let b = up.commit("x.yaml", "v: b\n");
    up.push("main");
    let stuck = source.fetch(&refs(&["main"]));
    assert!(
        stuck.is_err()
            || update(stuck.as_ref().expect("outcome"), "main")
                .commit
                .to_string()
                != b,
        "a stale lock blocks the ref's update: {stuck:?}"
    );

    drop(source);
    let cleared = Source::clear_stale_locks(work.path()).expect("clear");
    assert_eq!(cleared, vec![lock.clone()]);
    assert!(!lock.exists());
    let mut source = Source::new(&up.config(), work.path().to_owned()).expect("source");
    let out = source
        .fetch(&refs(&["main"]))
        .expect("fetch after the clean-up");
    assert_eq!(update(&out, "main").commit.to_string(), b);
}

/// Issue 15, bug g: the mirror under the daemon's workdir is the mirror of one URL. A daemon
/// whose `source.url` changed (same workdir) starts a fresh mirror: the other repository's
/// history is no force-push of the old one.
#[test]
fn a_changed_source_url_starts_a_fresh_mirror_and_reports_no_force_push() {
    let old = Upstream::new();
    old.commit("x.yaml", "repo: old\n");
    old.push("main");
    let new = Upstream::new();
    let fresh = new.commit("x.yaml", "repo: new\n");
    new.push("main");
    let work = tempfile::tempdir().expect("temp dir");
    let main = refs(&["main"]);

    let dir = mirror_dir(work.path(), &old.config().url);
    let mut source = Source::new(&old.config(), dir).expect("source");
    source.fetch(&main).expect("fetch the old repo");
    drop(source);

    let dir = mirror_dir(work.path(), &new.config().url);
    let mut source = Source::new(&new.config(), dir).expect("source");
    let u = update(&source.fetch(&main).expect("fetch the new repo"), "main");
    assert_eq!(u.commit.to_string(), fresh);
    assert!(
        u.previous.is_none() && !u.rewrite,
        "the new repo is not a force-push of the old one: {u:?}"
    );
}

/// Issue 15, bug g: two daemons with the same workdir following the same repository would
/// share one mirror; the second is refused, told which directory and what to do.
#[test]
fn a_second_daemon_on_the_same_mirror_is_refused_naming_the_directory_and_the_fix() {
    let up = Upstream::new();
    let work = tempfile::tempdir().expect("temp dir");
    let url = up.config().url;
    let dir = mirror_dir(work.path(), &url);
    let first = MirrorLock::acquire(&dir, &url).expect("the first daemon takes the mirror");

    let err = MirrorLock::acquire(&dir, &url).expect_err("the mirror is held");
    let text = err.to_string();
    assert!(matches!(err, SourceError::MirrorInUse { .. }), "{err:?}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "{text}"
    );
    assert!(
        text.contains("give each daemon its own --workdir"),
        "{text}"
    );

    // Another repository in the same workdir has a mirror of its own.
    let other = Upstream::new().config().url;
    assert_ne!(mirror_dir(work.path(), &other), dir);
    let _other = MirrorLock::acquire(&mirror_dir(work.path(), &other), &other).expect("free");

    // Released with its holder (a stopped daemon, however it stopped).
    drop(first);
    MirrorLock::acquire(&dir, &url).expect("free again");
}
