//! The in-cluster deployment: the Dockerfile (hadolint), `manifests/` applied to the local
//! control plane, and two `gitopsd run` replicas on this host authenticated as the manifests'
//! ServiceAccount (a TokenRequest token, not admin), electing a leader with a Lease; the tier
//! writes as its own ServiceAccount, impersonated (`serviceAccount`), as the manifests' tiers
//! do. `kubectl auth can-i` checks what the shipped RBAC grants whom.
//!
//! `cargo test --test it deploy::`. The install (`manifests/core`) stays in the cluster after the
//! tests (re-applying it is a no-op); each replica test has its own tier, state namespace and
//! Lease, deleted when it ends.

use crate::git_support;
use crate::reconcile_support;
use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gitopsd::daemon::SHUTDOWN_GRACE;
use gitopsd::leader::LEASE_DURATION;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use reconcile_support::{
    BASE_OBJECTS, DaemonExtra, Fixture, IMAGE_1, TierExtra, base_files, configmap, http_get,
    http_request, tail,
};
use serde_json::{Value, json};

const API_TOKEN: &str = "deploy-test-token";

fn kubectl() -> PathBuf {
    let version = support::pinned_kubernetes_version();
    let cache = std::env::var_os("GITOPSD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gitopsd")
        });
    let path = cache.join(format!("bin/kubernetes-{version}/kubectl"));
    assert!(
        path.exists(),
        "no kubectl at {} (scripts/build-control-plane.sh builds it)",
        path.display()
    );
    path
}

fn hadolint() -> PathBuf {
    if let Some(p) = std::env::var_os("GITOPSD_HADOLINT") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("GITOPSD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gitopsd")
        });
    let path = cache.join("hadolint/bin/hadolint");
    assert!(
        path.exists(),
        "no hadolint at {} (scripts/install-deps.sh installs it)",
        path.display()
    );
    path
}

#[test]
fn the_dockerfile_has_no_hadolint_finding_above_info() {
    let out = Command::new(hadolint())
        .args(["--format", "json", "--no-fail"])
        .arg(support::repo_root().join("Dockerfile"))
        .output()
        .expect("run hadolint");
    let text = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "hadolint printed no JSON ({e}): {text} {}",
            support::stderr(&out)
        )
    });
    let serious: Vec<&Value> = findings
        .iter()
        .filter(|f| matches!(f["level"].as_str(), Some("error" | "warning")))
        .collect();
    assert!(
        serious.is_empty(),
        "hadolint findings above info: {serious:#?}"
    );
    // What the image promises: multi-stage, a non-root numeric user, no shell form at run time.
    let dockerfile = std::fs::read_to_string(support::repo_root().join("Dockerfile")).unwrap();
    assert_eq!(dockerfile.matches("\nFROM ").count(), 2, "two stages");
    assert!(dockerfile.contains("distroless"), "a base without a shell");
    assert!(
        dockerfile.contains("USER 65532:65532"),
        "a numeric non-root user"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/gitopsd\"]"));
}

/// `kubectl apply --server-side -k manifests/core`, once per test binary; its output.
fn install() -> String {
    static INSTALLED: Mutex<Option<String>> = Mutex::new(None);
    let mut done = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(out) = done.as_ref() {
        return out.clone();
    }
    // tier-access.yaml makes the example's tier namespaces, which tests/it/drift.rs applies and
    // deletes under this lock: take it, and wait out a deletion of theirs still under way.
    let lock_path = std::env::temp_dir().join("gitopsd-test-example-tiers.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    for ns in ["shop-exp", "shop-val", "shop-ops"] {
        support::eventually_blocking(
            &format!("namespace {ns} to be deleted"),
            Duration::from_secs(120),
            || {
                let out = Command::new(kubectl())
                    .arg("--kubeconfig")
                    .arg(support::kubeconfig())
                    .args(["get", "namespace", ns, "--ignore-not-found", "-o"])
                    .arg("jsonpath={.metadata.deletionTimestamp}")
                    .output()
                    .expect("run kubectl");
                let deleting = support::stdout(&out).trim().to_owned();
                match deleting.is_empty() {
                    true => Ok(()),
                    false => Err(format!("deletionTimestamp {deleting}")),
                }
            },
        );
    }
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "gitopsd-install",
            "-k",
        ])
        .arg(support::repo_root().join("manifests/core"))
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl apply --server-side -k manifests/core failed: {}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    drop(lock);
    let text = support::stdout(&out);
    *done = Some(text.clone());
    text
}

fn kustomize_build(dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(support::repo_root().join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kustomize {dir}: {}",
        support::stderr(&out)
    );
    serde_yaml::Deserializer::from_str(&support::stdout(&out))
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

fn id(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or("-"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[tokio::test]
async fn the_manifests_apply_server_side_and_the_pod_template_meets_pod_security_restricted() {
    let core = kustomize_build("manifests/core");
    let full = kustomize_build("manifests");
    let output = install();
    // Every object was accepted: one line per object, none refused.
    for o in &core {
        let kind = o["kind"].as_str().unwrap().to_lowercase();
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(
            output
                .lines()
                .any(|l| l.starts_with(&kind) && l.contains(&format!("/{name} "))),
            "{} not in kubectl's output:\n{output}",
            id(o)
        );
    }
    let kinds: BTreeSet<&str> = core.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(k), "manifests/core has no {k}");
    }
    // The tier Namespaces are created for their RoleBindings only: the config repo owns their
    // labels, so the install sets none but the tier label, with the very value gitopsd's apply
    // sets (a value two managers agree on is shared, no conflict): the tier takes its Namespace
    // over as its own.
    let tiers = [
        ("shop-exp", "experimental"),
        ("shop-val", "validation"),
        ("shop-ops", "operational"),
    ];
    for o in core.iter().filter(|o| o["kind"] == "Namespace") {
        if o["metadata"]["name"] != "gitopsd" {
            let tier = tiers
                .iter()
                .find(|(ns, _)| o["metadata"]["name"] == *ns)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("{} is no example tier's namespace", id(o)));
            assert_eq!(
                o["metadata"]["labels"],
                json!({"gitopsd.io/tier": tier}),
                "tier namespace {} carries labels the config repo also sets",
                id(o)
            );
        }
    }
    // Every object of gitopsd's own carries its labels.
    for o in core
        .iter()
        .filter(|o| o["kind"] != "Namespace" || o["metadata"]["name"] == "gitopsd")
    {
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "gitopsd",
            "{}",
            id(o)
        );
    }
    // The full install is the core plus the Prometheus Operator's two kinds (whose CRDs the
    // local control plane does not have: they are checked here, not applied).
    let core_ids: BTreeSet<String> = core.iter().map(id).collect();
    let extra: BTreeSet<String> = full
        .iter()
        .map(id)
        .filter(|i| !core_ids.contains(i))
        .collect();
    assert_eq!(
        extra,
        BTreeSet::from([
            "PrometheusRule/gitopsd/gitopsd".to_owned(),
            "ServiceMonitor/gitopsd/gitopsd".to_owned()
        ])
    );
    let monitor = full.iter().find(|o| o["kind"] == "ServiceMonitor").unwrap();
    let service = core.iter().find(|o| o["kind"] == "Service").unwrap();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );

    let client = support::client().await;
    // The objects are there, read back from the API server.
    let ns: Api<Namespace> = Api::all(client.clone());
    let gitopsd_ns = ns.get("gitopsd").await.expect("namespace gitopsd");
    assert_eq!(
        gitopsd_ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "gitopsd");
    let deployment = deployments
        .get("gitopsd")
        .await
        .expect("deployment gitopsd");
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2));

    // A Pod made from the template passes the namespace's Pod Security admission (a
    // server-side dry-run: admission runs, nothing is stored)...
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gitopsd");
    let mut template = serde_json::to_value(&spec.template).unwrap();
    template["metadata"]["name"] = json!("gitopsd-template-check");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"],
        "spec": template["spec"],
    }))
    .unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    pods.create(&dry, &pod)
        .await
        .unwrap_or_else(|e| panic!("the Deployment's pod is refused in namespace gitopsd: {e}"));
    // ...and the level is enforced: the same Pod allowed to escalate is refused.
    let mut bad = pod.clone();
    let c = &mut bad.spec.as_mut().unwrap().containers[0];
    c.security_context
        .as_mut()
        .unwrap()
        .allow_privilege_escalation = Some(true);
    let err = pods
        .create(&dry, &bad)
        .await
        .expect_err("a Pod that may escalate is refused under restricted");
    assert!(
        err.to_string().contains("restricted"),
        "refused for another reason: {err}"
    );
}

/// A kubeconfig that authenticates as ServiceAccount gitopsd/gitopsd, with a token from the
/// TokenRequest API (an hour long).
async fn service_account_kubeconfig(admin: &Client, dir: &Path) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "gitopsd");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request("gitopsd", &PostParams::default(), &request)
        .await
        .expect("TokenRequest for gitopsd/gitopsd")
        .status
        .expect("a token")
        .token;
    let mut kc: Value = serde_yaml::from_str(
        &std::fs::read_to_string(support::kubeconfig()).expect("read kubeconfig"),
    )
    .expect("kubeconfig YAML");
    kc["users"] = json!([{"name": "gitopsd-sa", "user": {"token": token}}]);
    let context = kc["contexts"][0]["context"]["cluster"].clone();
    kc["contexts"] =
        json!([{"name": "gitopsd-sa", "context": {"cluster": context, "user": "gitopsd-sa"}}]);
    kc["current-context"] = json!("gitopsd-sa");
    let path = dir.join("kubeconfig-sa");
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).expect("write kubeconfig");
    path
}

async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("load kubeconfig");
    Client::try_from(config).expect("client")
}

/// The name of the test tier's ServiceAccount: one of the names Role gitopsd (rbac.yaml) lets
/// the daemon impersonate, in the test's state namespace (where the copy of that Role is).
const TIER_SA: &str = "tier-experimental";

/// Cluster-scoped objects a test made, deleted when it ends (however it ends).
struct ClusterScoped {
    names: Vec<String>,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        support::cleanup_blocking(move |client| async move {
            for n in names {
                let _ = Api::<ClusterRoleBinding>::all(client.clone())
                    .delete(&n, &Default::default())
                    .await;
                let _ = Api::<ClusterRole>::all(client.clone())
                    .delete(&n, &Default::default())
                    .await;
            }
        });
    }
}

/// What the manifests give gitopsd and a tier in a tier namespace and in gitopsd's namespace,
/// given here for the test's tier and state namespaces: the RoleBindings of ClusterRoles
/// gitopsd-tier (the daemon's reads) and gitopsd-tier-write (the tier ServiceAccount's
/// writes) (tier-access.yaml), the tier ServiceAccount in the state namespace, a ClusterRole
/// granting it the tier's Namespace by name (as gitopsd-tier-<tier> does), and a copy of Role
/// gitopsd (rbac.yaml: its impersonate rule names the ServiceAccount) with its RoleBinding.
async fn grant(admin: &Client, tier_ns: &str, state_ns: &str) -> ClusterScoped {
    let ns: Api<Namespace> = Api::all(admin.clone());
    for n in [tier_ns, state_ns] {
        // Labelled for the tier, as a tier's own Namespace (the tier applies it over this).
        let labels = if n == tier_ns {
            json!({"gitopsd.io/tier": tier_ns})
        } else {
            json!({})
        };
        let o: Namespace =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": labels}})).unwrap();
        ns.create(&PostParams::default(), &o)
            .await
            .unwrap_or_else(|e| panic!("create namespace {n}: {e}"));
    }
    let sa: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": TIER_SA}, "automountServiceAccountToken": false}),
    )
    .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), state_ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("the tier ServiceAccount");
    let tier_subject = json!([{"kind": "ServiceAccount", "name": TIER_SA, "namespace": state_ns}]);
    let b: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "gitopsd-tier-write"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gitopsd-tier-write"},
        "subjects": tier_subject,
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), tier_ns)
        .create(&PostParams::default(), &b)
        .await
        .expect("tier write RoleBinding");
    let cluster = ClusterScoped {
        names: vec![format!("gitopsd-tier-{tier_ns}")],
    };
    let cr: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": cluster.names[0]},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [tier_ns],
                   "verbs": ["get", "create", "patch"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &cr)
        .await
        .expect("the tier's ClusterRole");
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": cluster.names[0]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster.names[0]},
        "subjects": tier_subject,
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .expect("the tier's ClusterRoleBinding");
    let subjects = json!([{"kind": "ServiceAccount", "name": "gitopsd", "namespace": "gitopsd"}]);
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), tier_ns);
    let b: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "gitopsd-tier"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gitopsd-tier"},
        "subjects": subjects,
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &b)
        .await
        .expect("tier RoleBinding");
    let role: Role = Api::namespaced(admin.clone(), "gitopsd")
        .get("gitopsd")
        .await
        .expect("Role gitopsd/gitopsd");
    let copy: Role = serde_json::from_value(json!({
        "metadata": {"name": "gitopsd"},
        "rules": role.rules,
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), state_ns)
        .create(&PostParams::default(), &copy)
        .await
        .expect("state Role");
    let b: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "gitopsd"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitopsd"},
        "subjects": subjects,
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), state_ns)
        .create(&PostParams::default(), &b)
        .await
        .expect("state RoleBinding");
    cluster
}

/// One `gitopsd run` replica: its own port, workdir (audit log) and identity (`POD_NAME`).
struct Replica {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
    workdir: PathBuf,
}

impl Replica {
    fn start(f: &Fixture, name: &str, kubeconfig: &Path, lease: &str) -> Replica {
        let port = git_support::free_port();
        let base = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
        let text = base.replace(
            &format!("127.0.0.1:{}", f.port),
            &format!("127.0.0.1:{port}"),
        ) + &format!(
            "leaderElection:\n  enabled: true\n  leaseName: {lease}\n  namespace: {}\n",
            f.state_ns
        );
        let config = f.dir.path().join(format!("gitopsd-{name}.yaml"));
        std::fs::write(&config, text).expect("write config");
        let log = f.dir.path().join(format!("{name}.log"));
        let workdir = f.dir.path().join(format!("work-{name}"));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--workdir")
            .arg(&workdir)
            .env("POD_NAME", name)
            .env_remove("GITOPSD_CONFIG")
            .env_remove("GITOPSD_KUSTOMIZE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start gitopsd");
        let r = Replica {
            name: name.to_owned(),
            child,
            port,
            log,
            workdir,
        };
        support::eventually_blocking(
            &format!("{name} to listen on {port}"),
            Duration::from_secs(30),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|e| format!("{e}; log: {}", tail(&r.log, 40)))
            },
        );
        r
    }

    fn status(&self, tier: &str) -> Value {
        match http_get(self.port, &format!("/api/v1/tiers/{tier}")) {
            Ok((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Objects this replica applied (created or configured: unchanged ones are not audited),
    /// from its audit log.
    fn applied(&self) -> BTreeSet<String> {
        let text =
            std::fs::read_to_string(support::audit_log_in(&self.workdir)).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "apply" && v["outcome"] != "failed")
            .map(|v| {
                let o = &v["object"];
                format!("{}/{}/{}", o["kind"], o["namespace"], o["name"])
            })
            .collect()
    }

    fn signal(&self, sig: &str) {
        let out = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill {sig} {}", self.name);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log, last lines ---\n{}",
                self.name,
                tail(&self.log, 60)
            );
        }
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until `want` holds the Lease; returns how long that took (for the log only).
async fn wait_holder(leases: &Api<Lease>, name: &str, want: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    support::eventually_every(
        &format!("{want} to hold Lease {name}"),
        timeout,
        Duration::from_millis(100),
        || async move {
            match holder(leases, name).await {
                Some(h) if h == want => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    start.elapsed()
}

async fn wait_synced(r: &Replica, tier: &str, revision: &str, timeout: Duration) -> Value {
    support::eventually_or(
        &format!("{} to be Synced at {revision}", r.name),
        timeout,
        || {
            let s = r.status(tier);
            let done = if s["revision"] == revision && s["sync"] == "Synced" {
                Ok(s)
            } else {
                Err(format!(
                    "{}\n{}",
                    reconcile_support::brief_status(&s),
                    tail(&r.log, 30)
                ))
            };
            std::future::ready(done)
        },
    )
    .await
}

/// A fixture whose daemons need the API token (to check a standby's 503).
fn fixture(test: &str, base: reconcile_support::Files) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("api-token");
    std::fs::write(&token, API_TOKEN).unwrap();
    let daemon = DaemonExtra {
        http: vec![format!("tokenFile: {}", token.display())],
        ..DaemonExtra::default()
    };
    let f = Fixture::with_daemon(test, base, TierExtra::default(), daemon);
    // The token file lives as long as the fixture's own dir.
    std::fs::copy(&token, f.dir.path().join("api-token")).unwrap();
    // The tier writes as its ServiceAccount (grant makes it), as the shipped config's tiers do,
    // and, as manifests/core, adopts its namespace, which exists before gitopsd (grant creates it).
    let config = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(
            &token.display().to_string(),
            &f.dir.path().join("api-token").display().to_string(),
        )
        .replace(
            "    prune: true\n",
            &format!(
                "    prune: true\n    serviceAccount: {}/{TIER_SA}\n    adopt: [{{kind: Namespace, name: {}}}]\n",
                f.state_ns, f.tier
            ),
        );
    std::fs::write(&f.config, config).unwrap();
    f
}

#[tokio::test]
async fn two_replicas_as_the_service_account_reconcile_and_the_standby_takes_over_after_sigkill() {
    install();
    let admin = support::client().await;
    let f = fixture("dep-kill", base_files(IMAGE_1));
    let _cluster = grant(&admin, &f.tier, &f.state_ns).await;
    let sa = service_account_kubeconfig(&admin, f.dir.path()).await;
    let lease_name = format!("lease-{}", f.tier);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &f.state_ns);

    // The service account's limits: refused outside its role. Reads and writes of namespaced
    // kinds are limited to the tier namespaces and gitopsd's own (the live cache watches
    // namespaced kinds per tier namespace); only cluster-scoped kinds are read cluster-wide.
    let as_sa = client_from(&sa).await;
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("gitopsd-escalate-{}", f.tier)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "gitopsd", "namespace": "gitopsd"}],
    }))
    .unwrap();
    let refused = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    };
    refused(
        Api::<ClusterRoleBinding>::all(as_sa.clone())
            .create(&PostParams::default(), &crb)
            .await
            .map(|_| ()),
        "creating a ClusterRoleBinding",
    );
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": format!("gitopsd-{}", f.tier)}}))
            .unwrap();
    refused(
        Api::<ConfigMap>::namespaced(as_sa.clone(), "default")
            .patch(
                cm.metadata.name.as_deref().unwrap(),
                &PatchParams::apply("gitopsd").force(),
                &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm.metadata.name}})),
            )
            .await
            .map(|_| ()),
        "writing a ConfigMap in namespace default (no tier's)",
    );
    refused(
        Api::<Secret>::namespaced(as_sa.clone(), "kube-system")
            .delete("anything", &Default::default())
            .await
            .map(|_| ()),
        "deleting a Secret in kube-system",
    );
    // Issue 8: reading Secrets in another namespace is refused, and so is listing them
    // cluster-wide; in the tier's namespace it is allowed.
    let list_secrets =
        |api: Api<Secret>| async move { api.list(&ListParams::default()).await.map(|_| ()) };
    for ns in ["kube-system", "default"] {
        refused(
            list_secrets(Api::namespaced(as_sa.clone(), ns)).await,
            &format!("listing Secrets in namespace {ns} (no tier's)"),
        );
    }
    refused(
        Api::<Secret>::namespaced(as_sa.clone(), "kube-system")
            .get("anything")
            .await
            .map(|_| ()),
        "reading a Secret in kube-system",
    );
    refused(
        list_secrets(Api::all(as_sa.clone())).await,
        "listing Secrets in every namespace",
    );
    refused(
        Api::<ConfigMap>::all(as_sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "listing ConfigMaps in every namespace",
    );
    list_secrets(Api::namespaced(as_sa.clone(), &f.tier))
        .await
        .unwrap_or_else(|e| panic!("listing Secrets in the tier namespace {}: {e}", f.tier));
    // Issue 13: the daemon's own identity writes nothing of a tier, not even in the tier's
    // namespace or its Namespace: only the tier's ServiceAccount, impersonated, may.
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}});
    refused(
        Api::<ConfigMap>::namespaced(as_sa.clone(), &f.tier)
            .patch(
                "probe",
                &PatchParams::apply("gitopsd"),
                &Patch::Apply(&probe),
            )
            .await
            .map(|_| ()),
        "writing a ConfigMap in the tier namespace as the daemon itself",
    );
    refused(
        Api::<Namespace>::all(as_sa.clone())
            .patch(
                &f.tier,
                &PatchParams::apply("gitopsd"),
                &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f.tier, "labels": {"x": "y"}}})),
            )
            .await
            .map(|_| ()),
        "patching the tier's Namespace as the daemon itself",
    );

    // Replica a starts first and leads; b stands by.
    let a = Replica::start(&f, "replica-a", &sa, &lease_name);
    wait_holder(&leases, &lease_name, "replica-a", Duration::from_secs(20)).await;
    let b = Replica::start(&f, "replica-b", &sa, &lease_name);
    let head = f.head();
    wait_synced(&a, &f.tier, &head, Duration::from_secs(90)).await;
    assert_eq!(a.status(&f.tier)["objects"], json!(BASE_OBJECTS));

    // The standby: ready, says who leads, reconciles nothing, refuses a sync naming the leader.
    let s = support::eventually_or("b to say it stands by", Duration::from_secs(10), || {
        let s = b.status(&f.tier);
        let done = match s["standby"] == "standby, leader is replica-a" {
            true => Ok(s),
            false => Err(reconcile_support::brief_status(&s)),
        };
        std::future::ready(done)
    })
    .await;
    assert_eq!(s["sync"], "Unknown", "the standby reconciled: {s}");
    assert_eq!(http_get(b.port, "/readyz").map(|r| r.0), Ok(200));
    let metric = |r: &Replica| {
        let (_, text) = http_get(r.port, "/metrics").expect("GET /metrics");
        text.lines()
            .find(|l| l.starts_with("gitopsd_leader "))
            .map(str::to_owned)
    };
    assert_eq!(metric(&a).as_deref(), Some("gitopsd_leader 1"));
    assert_eq!(metric(&b).as_deref(), Some("gitopsd_leader 0"));
    let (code, body) = http_request(
        b.port,
        "POST",
        &format!("/api/v1/tiers/{}/sync", f.tier),
        &[("Authorization", &format!("Bearer {API_TOKEN}"))],
        b"",
    )
    .expect("POST sync");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("leader is replica-a"), "{body}");

    // SIGKILL the leader: b takes the Lease once it expires.
    let applied_by_a = a.applied();
    assert!(!applied_by_a.is_empty(), "a's audit log shows its applies");
    a.signal("-KILL");
    let killed = Instant::now();
    let renewed = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap();
    let since_renew_ms =
        k8s_openapi::jiff::Timestamp::now().as_millisecond() - renewed.0.as_millisecond();
    wait_holder(&leases, &lease_name, "replica-b", LEASE_DURATION * 2).await;
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL of the leader: {takeover:.1?} (lease duration {LEASE_DURATION:?}; its last renew was {since_renew_ms} ms before the kill)"
    );
    drop(a);

    // b carries on from a's state: a new commit is applied, and nothing a applied is applied
    // again.
    f.write_files(&vec![(
        "base/extra-5.yaml".to_owned(),
        configmap("extra-5", &[]),
    )]);
    let head = f.commit("extra-5");
    wait_synced(&b, &f.tier, &head, Duration::from_secs(60)).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &f.tier);
    cms.get("extra-5").await.expect("extra-5 applied by b");
    let applied_by_b = b.applied();
    let both: Vec<&String> = applied_by_a.intersection(&applied_by_b).collect();
    assert!(both.is_empty(), "applied by both replicas: {both:?}");
    assert!(
        applied_by_b.iter().any(|o| o.contains("extra-5")),
        "b applied extra-5: {applied_by_b:?}"
    );
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(crb.metadata.name.as_deref().unwrap(), &Default::default())
        .await;
    drop(b);
    let lease = leases.get(&lease_name).await.unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
}

#[tokio::test]
async fn sigterm_during_a_large_sync_exits_within_the_grace_period_and_the_next_leader_completes_it()
 {
    install();
    let admin = support::client().await;
    let f = fixture("dep-term", base_files(IMAGE_1));
    let _cluster = grant(&admin, &f.tier, &f.state_ns).await;
    let sa = service_account_kubeconfig(&admin, f.dir.path()).await;
    let lease_name = format!("lease-{}", f.tier);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &f.state_ns);

    let a = Replica::start(&f, "replica-a", &sa, &lease_name);
    wait_holder(&leases, &lease_name, "replica-a", Duration::from_secs(20)).await;
    let b = Replica::start(&f, "replica-b", &sa, &lease_name);
    let head = f.head();
    wait_synced(&a, &f.tier, &head, Duration::from_secs(90)).await;

    // A large commit: 400 ConfigMaps.
    const LARGE: usize = 400;
    let files: Vec<(String, String)> = (0..LARGE)
        .map(|i| {
            (
                format!("base/bulk-{i:03}.yaml"),
                configmap(&format!("bulk-{i:03}"), &[]),
            )
        })
        .collect();
    f.write_files(&files);
    let head = f.commit("400 ConfigMaps");
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &f.tier);
    let bulk = || async {
        cms.list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|c| {
                        c.metadata
                            .name
                            .as_deref()
                            .unwrap_or("")
                            .starts_with("bulk-")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    // SIGTERM once the apply is under way (polled often: the sync is a few seconds long).
    support::eventually_every(
        "the large sync to start",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            match bulk().await {
                n if n >= 20 => Ok(()),
                n => Err(format!("{n} ConfigMaps applied")),
            }
        },
    )
    .await;
    a.signal("-TERM");
    let termed = Instant::now();
    let mut a = a;
    // The daemon's own grace period bounds its exit (it stops waiting then); the margin is
    // only this test's patience, not a claim about speed.
    let status = support::eventually_every(
        "a to exit after SIGTERM, within its grace period",
        SHUTDOWN_GRACE + Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let done = match a.child.try_wait().expect("wait") {
                Some(s) => Ok(s),
                None => Err(tail(&a.log, 30)),
            };
            std::future::ready(done)
        },
    )
    .await;
    let exit_after = termed.elapsed();
    let at_exit = bulk().await;
    println!(
        "SIGTERM during the sync: exit {status} after {exit_after:.1?}, {at_exit}/{LARGE} ConfigMaps applied by then"
    );
    assert!(status.success(), "a exited {status}: {}", tail(&a.log, 30));
    assert!(
        at_exit < LARGE,
        "the sync finished before SIGTERM: not a test of stopping mid-sync"
    );
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        log.contains("Lease released"),
        "a released the Lease: {}",
        tail(&a.log, 20)
    );

    // The Lease was released (a's log says so, above): b takes it at its next try. The time it
    // took is printed, not asserted: a shared CI machine may be slow at any moment.
    let takeover = wait_holder(&leases, &lease_name, "replica-b", LEASE_DURATION * 2).await;
    println!("takeover after SIGTERM (Lease released): {takeover:.1?} after a exited");

    // b completes the sync: every ConfigMap, the revision Synced, nothing applied twice.
    wait_synced(&b, &f.tier, &head, Duration::from_secs(120)).await;
    assert_eq!(bulk().await, LARGE);
    let applied_by_a = a.applied();
    let applied_by_b = b.applied();
    let both: Vec<&String> = applied_by_a.intersection(&applied_by_b).collect();
    assert!(both.is_empty(), "applied by both replicas: {both:?}");
    let bulk_applied = applied_by_a
        .union(&applied_by_b)
        .filter(|o| o.contains("bulk-"))
        .count();
    assert_eq!(
        bulk_applied, LARGE,
        "every ConfigMap applied by one of them"
    );
    let state: ConfigMap = Api::namespaced(admin.clone(), &f.state_ns)
        .get(&gitopsd::state::StateStore::config_map_name(&f.tier))
        .await
        .expect("the tier state");
    let state_text = serde_json::to_string(&state.data).unwrap();
    assert!(
        state_text.contains(&head),
        "the state records {head} as applied"
    );
    drop(b);
}

#[tokio::test]
async fn a_lost_lease_stops_writes_at_once_and_a_regained_one_resumes_from_the_state() {
    install();
    let admin = support::client().await;
    let f = fixture("dep-lost", base_files(IMAGE_1));
    let _cluster = grant(&admin, &f.tier, &f.state_ns).await;
    let sa = service_account_kubeconfig(&admin, f.dir.path()).await;
    let lease_name = format!("lease-{}", f.tier);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &f.state_ns);
    let a = Replica::start(&f, "replica-a", &sa, &lease_name);
    wait_holder(&leases, &lease_name, "replica-a", Duration::from_secs(20)).await;
    wait_synced(&a, &f.tier, &f.head(), Duration::from_secs(90)).await;

    // Someone else writes the Lease (as another elector would after a's renews had failed).
    let mut lease = leases.get(&lease_name).await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    leases
        .replace(&lease_name, &PostParams::default(), &lease)
        .await
        .expect("take the Lease");
    let taken = Instant::now();
    support::eventually_every(
        "a to stand by for the intruder",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let done = match a.status(&f.tier)["standby"] == "standby, leader is intruder" {
                true => Ok(()),
                false => Err(format!("a still leads: {}", tail(&a.log, 20))),
            };
            std::future::ready(done)
        },
    )
    .await;
    println!(
        "leadership lost {:.1?} after the Lease changed hands",
        taken.elapsed()
    );

    // No writes while another holds the Lease: a new commit is not applied.
    f.write_files(&vec![(
        "base/extra-9.yaml".to_owned(),
        configmap("extra-9", &[]),
    )]);
    let head = f.commit("extra-9");
    // A replica on standby reconciles nothing, but it goes on fetching: two fetches that
    // began after the commit brought it to this replica, which had its chance to apply it.
    reconcile_support::wait_timestamps(
        "two more fetches of the replica that lost the Lease",
        "/source/lastFetchAt",
        2,
        Duration::from_secs(30),
        || a.status(&f.tier),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &f.tier);
    assert!(
        cms.get_opt("extra-9").await.unwrap().is_none(),
        "a replica that lost the Lease applied a commit"
    );

    // The intruder releases it: a leads again, reads the state and applies only the new commit.
    let mut lease = leases.get(&lease_name).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = None;
    leases
        .replace(&lease_name, &PostParams::default(), &lease)
        .await
        .expect("release the Lease");
    wait_holder(&leases, &lease_name, "replica-a", Duration::from_secs(10)).await;
    wait_synced(&a, &f.tier, &head, Duration::from_secs(60)).await;
    cms.get("extra-9")
        .await
        .expect("extra-9 applied after a leads again");
    let created: Vec<String> = a
        .applied()
        .into_iter()
        .filter(|o| !o.contains("extra-9"))
        .collect();
    assert_eq!(
        created.len(),
        BASE_OBJECTS,
        "only extra-9 was applied again: {created:?}"
    );
}

/// `kubectl auth can-i ... --as <user>` against the shipped manifests: true for "yes".
fn can_i(user: &str, args: &[&str]) -> bool {
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as={user}"))
        .output()
        .expect("run kubectl auth can-i");
    match support::stdout(&out).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {args:?} --as={user}: {other:?} {}",
            support::stderr(&out)
        ),
    }
}

/// Issue 13: the shipped RBAC. The daemon's own ServiceAccount reads and impersonates the tier
/// ServiceAccounts by name, and writes nothing of a tier; each tier's ServiceAccount writes
/// only in its own namespace and its own cluster-scoped objects by name.
#[test]
fn the_shipped_rbac_lets_the_daemon_only_read_and_impersonate_and_each_tier_write_only_its_own() {
    install();
    let daemon = "system:serviceaccount:gitopsd:gitopsd";
    let exp = "system:serviceaccount:gitopsd:tier-experimental";
    let val = "system:serviceaccount:gitopsd:tier-validation";
    let mut wrong = Vec::new();
    let mut check = |user: &str, args: &[&str], want: bool| {
        if can_i(user, args) != want {
            wrong.push(format!(
                "{user} {args:?}: expected {}",
                if want { "yes" } else { "no" }
            ));
        }
    };
    // The daemon itself: no write of any Namespace, CRD, RBAC object or tier object.
    for args in [
        &["delete", "namespace/kube-system"][..],
        &["patch", "namespace/default"],
        &["patch", "namespace/shop-exp"],
        &["create", "namespaces"],
        &["create", "clusterrolebindings"],
        &["create", "clusterroles"],
        &[
            "patch",
            "customresourcedefinitions/featureflags.shop.example.com",
        ],
        &["delete", "customresourcedefinitions"],
        &["create", "configmaps", "-n", "shop-exp"],
        &["patch", "deployments", "-n", "shop-exp"],
        &["delete", "secrets", "-n", "shop-exp"],
        &["create", "rolebindings", "-n", "shop-exp"],
        &["create", "configmaps", "-n", "kube-system"],
        &["list", "secrets", "-n", "kube-system"],
        // Impersonation: the tier ServiceAccounts by name, nothing else.
        &["impersonate", "serviceaccounts/default", "-n", "gitopsd"],
        &["impersonate", "serviceaccounts/gitopsd", "-n", "gitopsd"],
        &[
            "impersonate",
            "serviceaccounts/tier-experimental",
            "-n",
            "shop-exp",
        ],
        &["impersonate", "users/admin"],
        &["impersonate", "groups/system:masters"],
        &["create", "serviceaccounts/token", "-n", "gitopsd"],
    ] {
        check(daemon, args, false);
    }
    for args in [
        &[
            "impersonate",
            "serviceaccounts/tier-experimental",
            "-n",
            "gitopsd",
        ][..],
        &[
            "impersonate",
            "serviceaccounts/tier-validation",
            "-n",
            "gitopsd",
        ],
        &[
            "impersonate",
            "serviceaccounts/tier-operational",
            "-n",
            "gitopsd",
        ],
        &["create", "subjectaccessreviews.authorization.k8s.io"],
        &["watch", "namespaces"],
        &["list", "secrets", "-n", "shop-exp"],
        &[
            "patch",
            "configmaps/gitopsd-state-experimental",
            "-n",
            "gitopsd",
        ],
    ] {
        check(daemon, args, true);
    }
    // A tier's ServiceAccount: its namespace and its own cluster-scoped objects, by name.
    for args in [
        &["patch", "namespace/shop-exp"][..],
        &["create", "namespace/shop-exp"],
        &["patch", "priorityclasses/shop-exp-serving"],
        &[
            "patch",
            "customresourcedefinitions/featureflags.shop.example.com",
        ],
        &["create", "secrets", "-n", "shop-exp"],
        &["delete", "deployments", "-n", "shop-exp"],
        &["create", "roles", "-n", "shop-exp"],
    ] {
        check(exp, args, true);
    }
    for args in [
        &["delete", "namespace/kube-system"][..],
        &["delete", "namespace/shop-exp"],
        &["patch", "namespace/shop-val"],
        &["patch", "namespace/kube-system"],
        &["create", "namespace/kube-system"],
        &["patch", "priorityclasses/shop-val-serving"],
        &["patch", "priorityclasses/system-cluster-critical"],
        &[
            "delete",
            "customresourcedefinitions/featureflags.shop.example.com",
        ],
        &["patch", "customresourcedefinitions/other.example.com"],
        &["create", "clusterrolebindings"],
        &["create", "clusterroles"],
        &["create", "secrets", "-n", "shop-val"],
        &["create", "configmaps", "-n", "kube-system"],
        &["create", "configmaps", "-n", "gitopsd"],
        &[
            "patch",
            "serviceaccounts/tier-experimental",
            "-n",
            "gitopsd",
        ],
        &["create", "validatingwebhookconfigurations"],
    ] {
        check(exp, args, false);
    }
    check(val, &["create", "secrets", "-n", "shop-val"], true);
    check(val, &["patch", "namespace/shop-val"], true);
    check(val, &["patch", "namespace/shop-exp"], false);
    check(val, &["create", "secrets", "-n", "shop-exp"], false);
    check(
        val,
        &[
            "patch",
            "customresourcedefinitions/featureflags.shop.example.com",
        ],
        false,
    );
    assert!(
        wrong.is_empty(),
        "kubectl auth can-i:\n{}",
        wrong.join("\n")
    );
}

/// `gitopsd validate --kubeconfig` as the daemon's own ServiceAccount: the shipped RBAC lets it
/// ask RBAC (SubjectAccessReview) what the tier's ServiceAccount may write, and the tier's
/// gaps are listed (here a PriorityClass it is not granted), the rest passes.
#[tokio::test]
async fn validate_as_the_daemons_service_account_lists_what_the_tiers_service_account_may_not_write()
 {
    install();
    let admin = support::client().await;
    let f = fixture("dep-val", base_files(IMAGE_1));
    let _cluster = grant(&admin, &f.tier, &f.state_ns).await;
    let sa = service_account_kubeconfig(&admin, f.dir.path()).await;
    let pc = format!("{}-prio", f.tier);
    f.write_files(&vec![(
        format!("tiers/{}/priorityclass.yaml", f.tier),
        format!(
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {pc}\nvalue: 1000\n"
        ),
    )]);
    f.commit("a PriorityClass the tier is not granted");
    let out = support::gitopsd(&[
        "validate",
        "--config",
        &f.config.display().to_string(),
        "--kubeconfig",
        &sa.display().to_string(),
    ]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        support::stderr(&out)
    );
    let who = format!("{}/{TIER_SA}", f.state_ns);
    for verb in ["create", "patch", "delete"] {
        assert!(
            text.contains(&format!(
                "PriorityClass {pc}: serviceAccount {who} may not {verb} priorityclasses.scheduling.k8s.io \"{pc}\" at the cluster scope"
            )),
            "{verb}: {text}"
        );
    }
    let gaps: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[scope/service-account-permission]"))
        .collect();
    assert_eq!(
        gaps.len(),
        3,
        "only the PriorityClass lacks permissions: {text}"
    );
    assert!(
        !text.contains("cannot check") && !text.contains("may not impersonate"),
        "{text}"
    );
}
