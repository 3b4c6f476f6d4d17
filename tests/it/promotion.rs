//! Promotion gates, change windows and signed commits, in process against the local cluster:
//! real reconcilers ([`TierReconciler`]) over a real config repo (a bare upstream made with the
//! git CLI, mirrored by the daemon's own [`Source`]) and a clock the test sets, so a 30-minute
//! soak or a window that opens at 14:00 takes no waiting.

use crate::git_support;
use crate::reconcile_support;
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use git_support::{Upstream, run, ssh_keygen};
use gitopsd::activity::{Activity, Observer, Observers};
use gitopsd::config::{SourceConfig, TierConfig};
use gitopsd::reconcile::{Checkouts, Clock, ReconcileReason, TierReconciler};
use gitopsd::revision::Revision;
use gitopsd::source::Source;
use gitopsd::state::StateStore;
use gitopsd::status::{StatusHandle, SyncState, TierStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Every activity, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<Activity>>);

impl Observer for Seen {
    fn observe(&self, a: &Activity) {
        self.0.lock().unwrap().push(a.clone());
    }
}

impl Seen {
    fn blocked(&self, tier: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| match a {
                Activity::PromotionBlocked {
                    tier: t, reason, ..
                } if t == tier => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn window_closed_syncs(&self, tier: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|a| {
                matches!(a, Activity::SyncFinished { tier: t, window_closed: true, .. } if t == tier)
            })
            .count()
    }
}

/// A settable clock.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn at(t: DateTime<Utc>) -> TestClock {
        TestClock(Arc::new(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
    fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::TimeDelta::from_std(d).unwrap();
    }
    fn clock(&self) -> Clock {
        let me = self.0.clone();
        Arc::new(move || *me.lock().unwrap())
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn suffix() -> String {
    format!("{:05}", fastrand::u32(..100_000))
}

/// The config repo: a bare upstream, its work tree, and the daemon's mirror of it.
struct Repo {
    _dir: tempfile::TempDir,
    up: Upstream,
    source: Arc<Mutex<Source>>,
}

impl Repo {
    fn new(tiers: &[&str]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::new(dir.path(), "config.git");
        for t in tiers {
            write(
                &up.work,
                &format!("tiers/{t}/tier.yaml"),
                &format!("namespace: {t}\n"),
            );
            write(
                &up.work,
                &format!("tiers/{t}/namespace.yaml"),
                &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {t}\n"),
            );
        }
        let config: SourceConfig =
            serde_yaml::from_str(&format!("url: {}", up.bare.display())).expect("source config");
        let source = Source::new(&config, dir.path().join("workdir")).expect("mirror");
        Repo {
            _dir: dir,
            up,
            source: Arc::new(Mutex::new(source)),
        }
    }

    /// Commits `base/settings.yaml` (a ConfigMap whose `value` is `value`) with git's extra
    /// args (signing), returns the sha.
    fn commit_value(&self, value: &str, git_args: &[&str]) -> String {
        write(&self.up.work, "base/settings.yaml", &settings(value));
        run(&self.up.work, "git", &["add", "-A"]);
        let mut args: Vec<&str> = git_args.to_vec();
        let message = format!("settings: {value}");
        args.extend(["commit", "-q", "-m", &message]);
        run(&self.up.work, "git", &args);
        run(&self.up.work, "git", &["rev-parse", "HEAD"])
    }

    /// Pushes `sha` to `branch` upstream and fetches it into the mirror.
    fn push_and_fetch(&self, sha: &str, branch: &str) {
        self.up.push(&format!("{sha}:refs/heads/{branch}"));
        self.fetch(&[branch]);
    }

    fn fetch(&self, refs: &[&str]) {
        let refs: Vec<String> = refs.iter().map(|s| s.to_string()).collect();
        let out = self.source.lock().unwrap().fetch(&refs).expect("fetch");
        for r in out.refs {
            r.result.expect("ref fetched");
        }
    }

    fn checkouts(&self) -> Arc<dyn Checkouts> {
        self.source.clone()
    }
}

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn settings(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: \"{value}\"\n"
    )
}

fn tier(yaml: &str) -> TierConfig {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("tier config {yaml}: {e}"))
}

struct Tier {
    reconciler: TierReconciler,
    status: StatusHandle,
    name: String,
}

impl Tier {
    fn new(
        client: &Client,
        state_ns: &str,
        config: TierConfig,
        repo: &Repo,
        clock: &TestClock,
        seen: &Arc<Seen>,
    ) -> Tier {
        let status = StatusHandle::new(&config.name);
        let name = config.name.clone();
        let mut reconciler = TierReconciler::new(
            config,
            false,
            client.clone(),
            StateStore::new(client.clone(), state_ns),
            repo.checkouts(),
            status.clone(),
            Observers::new(vec![seen.clone()]),
        );
        reconciler.set_clock(clock.clock());
        Tier {
            reconciler,
            status,
            name,
        }
    }

    async fn offer(&mut self, sha: &str) {
        self.reconciler.offer_revision(&sha.into()).await;
        self.reconcile().await;
    }

    async fn reconcile(&mut self) {
        self.reconciler
            .reconcile(ReconcileReason::Revision, &CancellationToken::new())
            .await;
    }

    /// Edits the value as a person would, then reconciles after each change the live cache
    /// sees (it may see another object's change first) until a reconcile saw the edit (its
    /// drift report shows it): a reconcile run before the cache showed it proves nothing
    /// either way. Returns the status of that reconcile.
    async fn edit_and_reconcile_until_seen(&mut self, client: &Client, ns: &str) -> TierStatus {
        let mut changes = self.reconciler.live_changes().expect("the live cache runs");
        changes.borrow_and_update();
        edit_value(client, ns).await;
        for _ in 0..10 {
            tokio::time::timeout(Duration::from_secs(60), changes.changed())
                .await
                .expect("the live cache sees the edit")
                .expect("the live cache runs");
            self.reconcile().await;
            let st = self.status.snapshot();
            if edit_seen(&st) {
                return st;
            }
        }
        panic!(
            "no reconcile of tier {} saw the edit: {:?}",
            self.name,
            self.status.snapshot()
        );
    }

    /// Reconciles until the tier is Synced and Healthy at `sha`.
    async fn until_healthy(&mut self, sha: &str) {
        for _ in 0..40 {
            let s = self.status.snapshot();
            if s.revision.as_ref().is_some_and(|r| r == sha)
                && s.sync == SyncState::Synced
                && s.health == gitopsd::health::Health::Healthy
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.reconcile().await;
        }
        panic!(
            "tier {} not Synced + Healthy at {sha}: {:?}",
            self.name,
            self.status.snapshot()
        );
    }
}

/// The status's drift report shows the edit of [`edit_value`].
fn edit_seen(st: &TierStatus) -> bool {
    st.drift
        .as_ref()
        .is_some_and(|d| d.items.iter().any(|i| i.key.name == "settings"))
}

async fn value_in(client: &Client, ns: &str) -> Option<String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.get_opt("settings")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data?.get("value").cloned())
}

/// A person edits the ConfigMap's value with another field manager: drift gitopsd corrects.
async fn edit_value(client: &Client, ns: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.patch(
        "settings",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(serde_json::json!({"data": {"value": "edited"}})),
    )
    .await
    .expect("edit");
}

async fn delete_namespaces(client: &Client, names: &[&str]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for n in names {
        let _ = api.delete(n, &DeleteParams::background()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_not_healthy_upstream_is_blocked_then_deploys_after_the_soak() {
    support::with_namespace("promo-gate", |client, state_ns| async move {
        let s = suffix();
        let (exp, val) = (format!("pe-{s}"), format!("pv-{s}"));
        let repo = Repo::new(&[&exp, &val]);
        let clock = TestClock::at(utc(2026, 11, 23, 9, 0));
        let seen = Arc::new(Seen::default());
        let mut e = Tier::new(
            &client,
            &state_ns,
            tier(&format!(
                "{{name: {exp}, ref: main, namespaces: [{exp}], clusterScoped: true}}"
            )),
            &repo,
            &clock,
            &seen,
        );
        let mut v = Tier::new(
            &client,
            &state_ns,
            tier(&format!(
                "{{name: {val}, ref: validation, namespaces: [{val}], clusterScoped: true, promoteFrom: {exp}, soak: 30m}}"
            )),
            &repo,
            &clock,
            &seen,
        );

        // A commit pushed to validation before experimental ran it: blocked, nothing applied.
        let c1 = repo.commit_value("one", &[]);
        repo.push_and_fetch(&c1, "validation");
        v.offer(&c1).await;
        v.reconcile().await;
        let st = v.status.snapshot();
        assert_eq!(st.sync, SyncState::Blocked, "{st:?}");
        assert_eq!(st.held_revision.as_ref().map(Revision::as_str), Some(c1.as_str()));
        let why = st.last_error.clone().unwrap_or_default();
        assert!(
            why.contains(&format!("tier {exp} has not recorded revision {}", &c1[..12]))
                && why.contains("opens once"),
            "{why}"
        );
        assert_eq!(value_in(&client, &val).await, None, "nothing applied");
        assert_eq!(seen.blocked(&val).len(), 1, "reported once, not per reconcile");

        // Experimental deploys it and becomes healthy (and publishes that to the config repo);
        // validation now waits for the soak.
        repo.push_and_fetch(&c1, "main");
        e.reconciler.set_publish_healthy(true);
        e.offer(&c1).await;
        e.until_healthy(&c1).await;
        e.reconcile().await;
        let tag = run(
            &repo.up.bare,
            "git",
            &["rev-parse", &format!("refs/gitopsd/healthy/{exp}/{c1}^{{commit}}")],
        );
        assert_eq!(tag, c1, "the healthy ref is published");
        clock.advance(Duration::from_secs(10 * 60));
        v.reconcile().await;
        let st = v.status.snapshot();
        assert_eq!(st.sync, SyncState::Blocked, "{st:?}");
        let why = st.last_error.clone().unwrap_or_default();
        assert!(why.contains("for 10m of the 30m soak"), "{why}");
        assert_eq!(value_in(&client, &val).await, None, "nothing applied");
        assert_eq!(seen.blocked(&val).len(), 2, "the soak is a second reason");

        // The soak has passed: the same reconcile path deploys it.
        clock.advance(Duration::from_secs(21 * 60));
        v.reconcile().await;
        v.until_healthy(&c1).await;
        assert_eq!(value_in(&client, &val).await.as_deref(), Some("one"));
        assert_eq!(v.status.snapshot().held_revision, None);

        // A newer commit on validation that experimental never ran is held; the deployed one
        // keeps being reconciled (a drift of it is still corrected).
        let c2 = repo.commit_value("two", &[]);
        repo.push_and_fetch(&c2, "validation");
        v.offer(&c2).await;
        let st = v.edit_and_reconcile_until_seen(&client, &val).await;
        assert_eq!(st.sync, SyncState::Blocked, "{st:?}");
        assert_eq!(st.revision.as_ref().map(Revision::as_str), Some(c1.as_str()));
        assert_eq!(value_in(&client, &val).await.as_deref(), Some("one"));
        delete_namespaces(&client, &[&exp, &val]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_inside_a_deny_window_applies_nothing_until_the_window_closes() {
    support::with_namespace("promo-window", |client, state_ns| async move {
        let name = format!("pw-{}", suffix());
        let repo = Repo::new(&[&name]);
        // Denied daily 12:00-14:00 UTC.
        let clock = TestClock::at(utc(2026, 11, 23, 11, 0));
        let seen = Arc::new(Seen::default());
        let mut t = Tier::new(
            &client,
            &state_ns,
            tier(&format!(
                "{{name: {name}, ref: main, namespaces: [{name}], clusterScoped: true, apply: {{forceConflicts: true}}, windows: [{{kind: deny, schedule: '0 12 * * *', duration: 2h}}]}}"
            )),
            &repo,
            &clock,
            &seen,
        );
        let c1 = repo.commit_value("one", &[]);
        repo.push_and_fetch(&c1, "main");
        t.offer(&c1).await;
        t.until_healthy(&c1).await;
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("one"));

        // 12:30: inside the deny window. A new commit waits, and so does a high drift.
        clock.set(utc(2026, 11, 23, 12, 30));
        let c2 = repo.commit_value("two", &[]);
        repo.push_and_fetch(&c2, "main");
        t.offer(&c2).await;
        // A reconcile saw the edit: what is left in place below was left by the window.
        let st = t.edit_and_reconcile_until_seen(&client, &name).await;
        assert_eq!(st.sync, SyncState::Blocked, "{st:?}");
        assert_eq!(st.held_revision.as_ref().map(Revision::as_str), Some(c2.as_str()));
        let w = st.window.clone().expect("window state in the status");
        assert!(!w.open);
        assert_eq!(w.next_change, Some(utc(2026, 11, 23, 14, 0)));
        assert!(
            st.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("change window closed"),
            "{st:?}"
        );
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("edited"));
        assert!(seen.window_closed_syncs(&name) >= 1);

        // A manual sync that overrides the window applies it once...
        t.reconciler
            .window_override()
            .store(true, std::sync::atomic::Ordering::SeqCst);
        t.reconcile().await;
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("two"));
        assert_eq!(t.status.snapshot().revision.as_ref().map(Revision::as_str), Some(c2.as_str()));
        // ...and only once: the next commit waits again.
        clock.set(utc(2026, 11, 23, 13, 0));
        let c3 = repo.commit_value("three", &[]);
        repo.push_and_fetch(&c3, "main");
        t.offer(&c3).await;
        t.reconcile().await;
        assert_eq!(t.status.snapshot().sync, SyncState::Blocked);
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("two"));

        // 14:01: the window closed; the next reconcile applies the new revision.
        clock.set(utc(2026, 11, 23, 14, 1));
        t.reconcile().await;
        t.until_healthy(&c3).await;
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("three"));
        assert_eq!(t.status.snapshot().window.map(|w| w.open), Some(true));
        delete_namespaces(&client, &[&name]).await;
    })
    .await;
}

/// An ed25519 key made with ssh-keygen, and an allowed-signers file that trusts it.
fn signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = ssh_keygen(dir, "signing-key", "t@example.com");
    let public = std::fs::read_to_string(dir.join("signing-key.pub")).unwrap();
    let allowed = dir.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("t@example.com namespaces=\"git\" {public}"),
    )
    .unwrap();
    (key, allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_block_an_unsigned_commit_inside_the_range_and_accept_a_signed_range() {
    support::with_namespace("promo-sign", |client, state_ns| async move {
        let name = format!("ps-{}", suffix());
        let repo = Repo::new(&[&name]);
        let keys = tempfile::tempdir().unwrap();
        let (key, allowed) = signing_key(keys.path());
        let key = key.to_string_lossy().into_owned();
        let sign = [
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={key}"),
            "-c",
            "commit.gpgsign=true",
        ];
        let sign: Vec<&str> = sign.iter().map(|s| s.as_ref()).collect();
        let clock = TestClock::at(utc(2026, 11, 23, 9, 0));
        let seen = Arc::new(Seen::default());
        let mut t = Tier::new(
            &client,
            &state_ns,
            tier(&format!(
                "{{name: {name}, ref: main, namespaces: [{name}], clusterScoped: true, requireSignedCommits: {{sshAllowedSigners: {}}}}}",
                allowed.display()
            )),
            &repo,
            &clock,
            &seen,
        );
        let c1 = repo.commit_value("one", &sign);
        repo.push_and_fetch(&c1, "main");
        t.offer(&c1).await;
        t.until_healthy(&c1).await;

        // signed, unsigned, signed: blocked, naming the unsigned one in the middle.
        let c2 = repo.commit_value("two", &sign);
        let c3 = repo.commit_value("three", &[]);
        let c4 = repo.commit_value("four", &sign);
        repo.push_and_fetch(&c4, "main");
        t.offer(&c4).await;
        let st = t.status.snapshot();
        assert_eq!(st.sync, SyncState::Blocked, "{st:?}");
        let why = st.last_error.unwrap_or_default();
        assert!(
            why.contains(&format!("commit {} (\"settings: three\") is not signed", &c3[..12])),
            "{why}"
        );
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("one"));

        // The ref moves back to the fully signed c2: accepted.
        repo.push_and_fetch(&c2, "main");
        t.offer(&c2).await;
        t.until_healthy(&c2).await;
        assert_eq!(value_in(&client, &name).await.as_deref(), Some("two"));

        // A commit signed by a key not in the allowed signers is refused too.
        repo.up.reset_hard(&c2);
        let other = tempfile::tempdir().unwrap();
        let (stranger, _) = signing_key(other.path());
        let stranger = format!("user.signingkey={}", stranger.display());
        let c5 = repo.commit_value(
            "five",
            &["-c", "gpg.format=ssh", "-c", &stranger, "-c", "commit.gpgsign=true"],
        );
        repo.push_and_fetch(&c5, "main");
        t.offer(&c5).await;
        let why = t.status.snapshot().last_error.unwrap_or_default();
        assert!(why.contains(&c5[..12]) && why.contains("not in"), "{why}");
        delete_namespaces(&client, &[&name]).await;
    })
    .await;
}

/// `gitopsd promote` (the binary) with `config` and `extra` args: exit code, stdout, stderr.
fn promote(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["promote"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("GITOPSD_CONFIG")
        .env("GITOPSD_LOG_FORMAT", "text")
        .output()
        .expect("run gitopsd promote");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn upstream_ref(repo: &Repo, name: &str) -> String {
    run(&repo.up.bare, "git", &["rev-parse", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_while_the_gate_is_closed_then_pushes_the_healthy_revision() {
    support::with_namespace("promo-cli", |client, state_ns| async move {
        let repo = Repo::new(&["experimental", "validation"]);
        let c0 = repo.commit_value("zero", &[]);
        repo.up.push(&format!("{c0}:refs/heads/tier/validation"));
        let c1 = repo.commit_value("one", &[]);
        let c2 = repo.commit_value("two", &[]);
        repo.up.push(&format!("{c2}:refs/heads/main"));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gitopsd.yaml");
        std::fs::write(
            &config,
            format!(
                "source: {{url: {}}}\ntiers:\n  - {{name: experimental, ref: main, namespaces: [e]}}\n  - {{name: validation, ref: tier/validation, namespaces: [v], promoteFrom: experimental, soak: 30m}}\nstate: {{namespace: {state_ns}}}\n",
                repo.up.bare.display()
            ),
        )
        .unwrap();
        let kc = support::kubeconfig().to_string_lossy().into_owned();

        // Nothing healthy in experimental: refused, nothing pushed.
        let (code, out, err) = promote(&config, &["experimental", "validation", "--kubeconfig", &kc]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("tier experimental has no healthy revision"), "{err}");
        assert_eq!(upstream_ref(&repo, "tier/validation"), c0);

        // Healthy for 10 minutes of the 30-minute soak: refused, naming the soak.
        let store = StateStore::new(client.clone(), &state_ns);
        let mut state = gitopsd::state::TierState::default();
        state.record_healthy(&c2.as_str().into(), Utc::now() - chrono::TimeDelta::minutes(10), None);
        store.save("experimental", &state).await.expect("save state");
        let (code, out, err) = promote(&config, &["experimental", "validation", "--kubeconfig", &kc]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("of the 30m soak"), "{err}");
        assert_eq!(upstream_ref(&repo, "tier/validation"), c0);

        // A revision experimental never ran is refused whatever the soak.
        let (code, _, err) = promote(
            &config,
            &["experimental", "validation", "--revision", &c1[..8], "--kubeconfig", &kc],
        );
        assert_eq!(code, 1);
        assert!(err.contains("has not recorded revision"), "{err}");

        // Soaked: pushed, fast-forward, with the range printed oldest... newest first.
        let mut state = gitopsd::state::TierState::default();
        state.record_healthy(&c2.as_str().into(), Utc::now() - chrono::TimeDelta::hours(1), None);
        store.save("experimental", &state).await.expect("save state");
        let (code, out, err) = promote(&config, &["experimental", "validation", "--kubeconfig", &kc]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("{}..{}", &c0[..12], &c2[..12])),
            "{out}"
        );
        assert!(out.contains(&format!("{} settings: two", &c2[..12])), "{out}");
        assert!(out.contains(&format!("{} settings: one", &c1[..12])), "{out}");
        assert!(!out.contains("settings: zero"), "{out}");
        assert_eq!(upstream_ref(&repo, "tier/validation"), c2);

        // validation moved elsewhere (a hotfix): not a fast-forward, refused without --force.
        repo.up.reset_hard(&c0);
        let hotfix = repo.commit_value("hotfix", &[]);
        repo.up.push(&format!("{hotfix}:refs/heads/tier/validation"));
        let (code, _, err) = promote(&config, &["experimental", "validation", "--kubeconfig", &kc]);
        assert_eq!(code, 1);
        assert!(err.contains("not a fast-forward"), "{err}");
        assert_eq!(upstream_ref(&repo, "tier/validation"), hotfix);
        let (code, out, err) =
            promote(&config, &["experimental", "validation", "--force", "--kubeconfig", &kc]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(upstream_ref(&repo, "tier/validation"), c2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_refs_in_git_open_the_gate_without_the_cluster_state() {
    let repo = Repo::new(&["experimental", "validation"]);
    let c1 = repo.commit_value("one", &[]);
    repo.up.push(&format!("{c1}:refs/heads/main"));
    repo.fetch(&["main"]);
    // The daemon of experimental's cluster publishes its evidence (an hour-old healthy tag).
    let since = Utc::now() - chrono::TimeDelta::hours(1);
    let record = gitopsd::state::HealthyRecord {
        revision: c1.as_str().into(),
        since,
        base_digest: Some("b45e".into()),
    };
    repo.source
        .lock()
        .unwrap()
        .publish_healthy("experimental", &record)
        .expect("publish");
    assert_eq!(
        run(
            &repo.up.bare,
            "git",
            &[
                "rev-parse",
                &format!("refs/gitopsd/healthy/experimental/{c1}^{{commit}}")
            ]
        ),
        c1
    );
    // A fresh mirror (another cluster's daemon) reads it back with its time and base digest.
    let other = tempfile::tempdir().unwrap();
    let config: SourceConfig =
        serde_yaml::from_str(&format!("url: {}", repo.up.bare.display())).unwrap();
    let mut mirror = Source::new(&config, other.path().to_owned()).unwrap();
    mirror.fetch(&["main".to_owned()]).expect("fetch");
    let seen = mirror.healthy_refs("experimental");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].revision, c1.as_str());
    assert_eq!(seen[0].since.timestamp(), since.timestamp());
    assert_eq!(seen[0].base_digest.as_deref(), Some("b45e"));

    // `gitopsd promote` with no cluster at all takes the evidence from git.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gitopsd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{url: {}}}\ntiers:\n  - {{name: experimental, ref: main, namespaces: [e]}}\n  - {{name: validation, ref: tier/validation, namespaces: [v], promoteFrom: experimental, soak: 30m}}\n",
            repo.up.bare.display()
        ),
    )
    .unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let (code, out, err) = promote(
        &cfg,
        &[
            "experimental",
            "validation",
            "--kubeconfig",
            &missing.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("only the healthy refs in git count"), "{err}");
    assert_eq!(upstream_ref(&repo, "tier/validation"), c1);
}

/// The daemon (the real binary, two tiers in one config): a commit pushed to validation first
/// is blocked (status, metric, audit), and deploys once experimental is healthy at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_blocks_a_promotion_until_the_earlier_tier_is_healthy() {
    support::with_namespace("promo-daemon", |client, state_ns| async move {
        let s = suffix();
        let (exp, val) = (format!("de-{s}"), format!("dv-{s}"));
        let repo = Repo::new(&[&exp, &val]);
        let c1 = repo.commit_value("one", &[]);
        // validation gets c1 first; main has nothing yet that experimental could run.
        repo.up.push(&format!("{c1}:refs/heads/tier/validation"));
        let dir = tempfile::tempdir().unwrap();
        let port = reconcile_support::free_port();
        let config = dir.path().join("gitopsd.yaml");
        std::fs::write(
            &config,
            format!(
                "source: {{url: {}, interval: 1s}}\ntiers:\n  - {{name: {exp}, ref: main, namespaces: [{exp}], clusterScoped: true}}\n  - {{name: {val}, ref: tier/validation, namespaces: [{val}], clusterScoped: true, promoteFrom: {exp}}}\nhttp: {{listen: \"127.0.0.1:{port}\"}}\nstate: {{namespace: {state_ns}}}\n",
                repo.up.bare.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("gitopsd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .arg("--workdir")
            .arg(dir.path().join("workdir"))
            .env_remove("GITOPSD_CONFIG")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start gitopsd");
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Kill(child);
        let tier_status = |tier: String| async move {
            let (code, body) =
                reconcile_support::http_get(port, &format!("/api/v1/tiers/{tier}")).ok()?;
            (code == 200).then(|| serde_json::from_str::<serde_json::Value>(&body).ok())?
        };
        let blocked = support::eventually("validation Blocked", Duration::from_secs(30), || {
            let f = tier_status(val.clone());
            async move { f.await.filter(|v| v["sync"] == "Blocked") }
        })
        .await;
        assert_eq!(blocked["heldRevision"], c1.as_str(), "{blocked}");
        assert_eq!(blocked["heldBy"], "promotion-gate", "{blocked}");
        assert!(
            blocked["lastError"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("tier {exp} has not recorded revision")),
            "{blocked}"
        );
        assert_eq!(value_in(&client, &val).await, None);
        let (_, metrics) = reconcile_support::http_get(port, "/metrics").expect("metrics");
        assert!(
            metrics.contains(&format!(
                "gitopsd_promotion_blocked{{held_by=\"promotion-gate\",tier=\"{val}\"}} 1"
            )) && metrics.contains(&format!(
                "gitopsd_promotion_blocked{{held_by=\"window\",tier=\"{val}\"}} 0"
            )),
            "{metrics}"
        );

        // experimental gets it, becomes healthy; validation follows on its own.
        repo.up.push(&format!("{c1}:refs/heads/main"));
        support::eventually("validation deployed", Duration::from_secs(60), || {
            let f = tier_status(val.clone());
            let c1 = c1.clone();
            async move {
                f.await
                    .filter(|v| v["revision"] == c1.as_str() && v["sync"] == "Synced")
            }
        })
        .await;
        assert_eq!(value_in(&client, &val).await.as_deref(), Some("one"));
        drop(child);
        let audit_log = support::audit_log_in(&dir.path().join("workdir"));
        let audit = std::fs::read_to_string(audit_log).unwrap_or_default();
        let blocked_lines = audit
            .lines()
            .filter(|l| l.contains("promotion-blocked") && l.contains(&val))
            .count();
        assert_eq!(blocked_lines, 1, "reported once: {audit}");
        delete_namespaces(&client, &[&exp, &val]).await;
    })
    .await;
}
