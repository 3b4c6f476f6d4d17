//! The API server as the second wall (issue 13, item 3): a tier with `serviceAccount` writes
//! as that ServiceAccount (impersonated), so whatever gitopsd's own validation lets through
//! still meets RBAC. A write RBAC refuses fails that object only, naming the permission that
//! is missing; nothing unpermitted reaches the cluster; nothing is pruned in that sync; the
//! next allowed commit applies. `gitopsd validate --kubeconfig` finds the same gaps first,
//! with SubjectAccessReviews.

use std::time::Duration;

use gitopsd::live::{ApiLive, LiveObjects, ObjectKey};
use serde_json::{Value, json};

use crate::reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, brief_status};
use crate::support::{self, ClusterScoped};

const SYNC: Duration = Duration::from_secs(120);

fn key(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(str::to_owned),
        name: name.into(),
    }
}

async fn apply(live: &ApiLive, manifest: Value) {
    support::apply_as(live, "isolation-test", &ObjectKey::of(&manifest), &manifest).await;
}

async fn exists(live: &ApiLive, key: &ObjectKey) -> bool {
    live.get(key)
        .await
        .unwrap_or_else(|e| panic!("read {key:?}: {e}"))
        .is_some()
}

/// The tier's ServiceAccount `<sa_ns>/tier-sa` and what it may write: ConfigMaps, Services
/// and Deployments in the tier's namespace (a Role), and the tier's Namespace by name (a
/// ClusterRole). Not Secrets, not PriorityClasses. The tier's Namespace is made here (the
/// bindings need it), labelled for the tier, which then applies its own manifest over it.
async fn grant(live: &ApiLive, tier: &str, sa_ns: &str, guard: &mut ClusterScoped) {
    let subject = json!([{"kind": "ServiceAccount", "name": "tier-sa", "namespace": sa_ns}]);
    apply(
        live,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "tier-sa", "namespace": sa_ns}}),
    )
    .await;
    apply(
        live,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": tier, "labels": {"gitopsd.io/tier": tier}}}),
    )
    .await;
    let verbs = json!(["get", "list", "watch", "create", "patch", "delete"]);
    apply(
        live,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "tier-writes", "namespace": tier},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": verbs},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
            // RoleBindings too: what a binding may grant is RBAC's escalation check.
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": verbs},
        ]}),
    )
    .await;
    apply(
        live,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "tier-writes", "namespace": tier},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tier-writes"},
               "subjects": subject}),
    )
    .await;
    let cluster_name = format!("gitopsd-test-{tier}");
    guard.0.push(key(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
        &cluster_name,
    ));
    guard.0.push(key(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        None,
        &cluster_name,
    ));
    apply(
        live,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": cluster_name},
               "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                          "resourceNames": [tier], "verbs": ["get", "create", "patch"]}]}),
    )
    .await;
    apply(
        live,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": cluster_name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
               "subjects": subject}),
    )
    .await;
}

/// The tier's Namespace exists before the daemon starts (grant makes it, for the bindings):
/// the tier adopts it, as the tiers of manifests/core do (a tier takes over no existing object
/// otherwise; its own label on the Namespace is no proof that it is the tier's).
fn adopt_namespace(f: &Fixture) {
    let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    let config = config.replacen(
        "    prune: true\n",
        &format!(
            "    prune: true\n    adopt: [{{kind: Namespace, name: {}}}]\n",
            f.tier
        ),
        1,
    );
    std::fs::write(&f.config, config).expect("write gitopsd.yaml");
}

/// The Secret below is plaintext in git, and the RoleBinding binds cluster-admin, which
/// validation blocks by default: warnings here, so that both reach the API server (as a hole
/// in validation would let them).
const PLAINTEXT_SECRET_WARNS: &str =
    "validation: {rules: {plaintext-secret: warn, rbac-grant: warn}}";

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: not-for-this-tier\n";

/// A RoleBinding that hands the tier's own ServiceAccount cluster-admin in its namespace.
fn escalation(sa_ns: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: escalate\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: ServiceAccount, name: tier-sa, namespace: {sa_ns}}}]\n"
    )
}

fn priority_class(name: &str) -> String {
    format!(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {name}\nvalue: 1000\n"
    )
}

/// The failure messages of the status's last sync.
fn failures(s: &Value) -> Vec<String> {
    s["lastSync"]["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The last sync failed the Secret and the PriorityClass.
fn refused_both(s: &Value, tier: &str, pc_name: &str) -> bool {
    let msgs = failures(s);
    msgs.iter()
        .any(|m| m.starts_with(&format!("Secret {tier}/db: ")))
        && msgs
            .iter()
            .any(|m| m.starts_with(&format!("PriorityClass {pc_name}: ")))
}

#[tokio::test]
async fn a_write_the_tiers_service_account_may_not_make_is_refused_by_the_api_server_and_named() {
    support::with_namespace("sa-rbac", |client, sa_ns| async move {
        let live = ApiLive::new(client.clone());
        let mut guard = ClusterScoped(Vec::new());
        let mut files = base_files(IMAGE_1);
        files.push(("base/secret.yaml".into(), SECRET.into()));
        let mut f = Fixture::new(
            "sa-rbac",
            files,
            TierExtra(vec![
                format!("serviceAccount: {sa_ns}/tier-sa"),
                PLAINTEXT_SECRET_WARNS.to_owned(),
            ]),
        );
        let tier = f.tier.clone();
        // A cluster-scoped object the tier may not write either (the admin running the daemon
        // could): a PriorityClass named for this tier, so the test owns its name.
        let pc_name = format!("{tier}-prio");
        guard
            .0
            .push(key("scheduling.k8s.io/v1", "PriorityClass", None, &pc_name));
        f.write_files(&vec![
            (
                format!("tiers/{tier}/priorityclass.yaml"),
                priority_class(&pc_name),
            ),
            ("base/escalate.yaml".to_owned(), escalation(&sa_ns)),
        ]);
        let first = f.commit("a Secret and a PriorityClass the tier's ServiceAccount may not write");
        grant(&live, &tier, &sa_ns, &mut guard).await;
        adopt_namespace(&f);

        // validate --kubeconfig asks RBAC first (SubjectAccessReview) and lists the gaps.
        let config = f.config.display().to_string();
        let kubeconfig = support::kubeconfig().display().to_string();
        let out = support::gitopsd(&["validate", "--config", &config, "--kubeconfig", &kubeconfig]);
        let text = support::stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}{}", support::stderr(&out));
        let sa = format!("{sa_ns}/tier-sa");
        for want in [
            format!(
                "base/secret.yaml line 1: Secret {tier}/db: serviceAccount {sa} may not create secrets \"db\" in namespace {tier} (the object does not exist yet"
            ),
            format!(
                "Secret {tier}/db: serviceAccount {sa} may not patch secrets \"db\" in namespace {tier} (server-side apply is a patch); the API server would refuse the tier's write: grant ServiceAccount {sa} the rule {{apiGroups: [\"\"], resources: [secrets], verbs: [patch]}} in a Role bound to it in namespace {tier}"
            ),
            format!(
                "PriorityClass {pc_name}: serviceAccount {sa} may not patch priorityclasses.scheduling.k8s.io \"{pc_name}\" at the cluster scope"
            ),
            format!("resourceNames: [{pc_name}]}} in a ClusterRole bound to it"),
        ] {
            assert!(text.contains(&want), "validate should say {want:?}:\n{text}");
        }
        // What the ServiceAccount may do raises nothing.
        for allowed in ["ConfigMap ", "Deployment ", "Service ", "Namespace "] {
            assert!(
                !text
                    .lines()
                    .any(|l| l.contains(allowed) && l.contains("service-account-permission")),
                "{allowed} is allowed:\n{text}"
            );
        }

        f.start();
        // The sync of the first commit is over once the status lists its failures.
        let s = f
            .wait_status("the refused writes of the first commit", SYNC, |s| {
                (s["revision"] == first.as_str() && refused_both(s, &tier, &pc_name))
                    .then(|| s.clone())
            })
            .await;
        assert_eq!(s["sync"], "OutOfSync", "{}", brief_status(&s));
        let msgs = failures(&s);
        let secret = msgs
            .iter()
            .find(|m| m.starts_with(&format!("Secret {tier}/db: ")))
            .unwrap_or_else(|| panic!("no failure for the Secret: {msgs:?}"));
        for want in [
            "apply refused by the API server (403 Forbidden)".to_owned(),
            format!(
                "system:serviceaccount:{sa_ns}:tier-sa may not patch secrets (API group core) in namespace {tier}"
            ),
            format!(
                "grant ServiceAccount {sa} the rule {{apiGroups: [\"\"], resources: [secrets], verbs: [patch]}} in a Role bound to it in namespace {tier}"
            ),
        ] {
            assert!(secret.contains(&want), "{want:?} in {secret}");
        }
        let pc = msgs
            .iter()
            .find(|m| m.starts_with(&format!("PriorityClass {pc_name}: ")))
            .unwrap_or_else(|| panic!("no failure for the PriorityClass: {msgs:?}"));
        assert!(
            pc.contains(&format!(
                "may not patch priorityclasses (API group scheduling.k8s.io) at the cluster scope; grant ServiceAccount {sa} the rule {{apiGroups: [\"scheduling.k8s.io\"], resources: [priorityclasses], verbs: [patch], resourceNames: [{pc_name}]}} in a ClusterRole"
            )),
            "{pc}"
        );
        // The tier's Role lets it write RoleBindings, but not one granting more than it holds.
        let esc = msgs
            .iter()
            .find(|m| m.starts_with(&format!("RoleBinding {tier}/escalate: ")))
            .unwrap_or_else(|| panic!("no failure for the escalating RoleBinding: {msgs:?}"));
        assert!(
            esc.contains("refused by the API server (403 Forbidden): RBAC's escalation check: the writer may not grant permissions it does not hold itself ({APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}")
                && esc.contains("a tier may grant only what its serviceAccount holds"),
            "{esc}"
        );
        // The log says it as well, per object.
        let log = f.daemon().log_tail(400);
        assert!(
            log.lines().any(|l| l.contains("apply failed")
                && l.contains(&format!("Secret {tier}/db"))
                && l.contains("may not patch secrets")),
            "{log}"
        );

        // A separate client: the refused objects are not in the cluster, the permitted ones
        // are (the rest of the sync went on).
        let secret_key = key("v1", "Secret", Some(&tier), "db");
        let pc_key = key("scheduling.k8s.io/v1", "PriorityClass", None, &pc_name);
        assert!(!exists(&live, &secret_key).await, "the Secret reached the cluster");
        assert!(!exists(&live, &pc_key).await, "the PriorityClass reached the cluster");
        let esc_key = key(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            Some(&tier),
            "escalate",
        );
        assert!(
            !exists(&live, &esc_key).await,
            "the escalating RoleBinding reached the cluster"
        );
        for (api_version, kind, name) in [
            ("v1", "ConfigMap", "api-config"),
            ("v1", "ConfigMap", "extra-1"),
            ("v1", "Service", "api"),
            ("apps/v1", "Deployment", "api"),
        ] {
            assert!(
                exists(&live, &key(api_version, kind, Some(&tier), name)).await,
                "{kind} {name} was not applied"
            );
        }

        // A commit that drops extra-1 while the Secret is still refused: nothing is pruned in
        // a sync where an object failed.
        f.remove_files(&["base/extra-1.yaml"]);
        let second = f.commit("extra-1 leaves the set; the Secret is still there");
        let s = f
            .wait_status("the second commit's sync", SYNC, |s| {
                (s["revision"] == second.as_str() && refused_both(s, &tier, &pc_name))
                    .then(|| s.clone())
            })
            .await;
        let notes = s["lastSync"]["pruneNotes"].to_string();
        assert!(
            notes.contains("prune skipped: an object of this sync failed to apply"),
            "{}",
            brief_status(&s)
        );
        let extra_1 = key("v1", "ConfigMap", Some(&tier), "extra-1");
        assert!(exists(&live, &extra_1).await, "extra-1 was pruned in a failed sync");

        // The next allowed commit applies and prunes, as the ServiceAccount may.
        f.remove_files(&[
            "base/secret.yaml",
            "base/escalate.yaml",
            &format!("tiers/{tier}/priorityclass.yaml"),
        ]);
        let third = f.commit("only what the tier may write");
        let s = f.wait_synced_healthy(&third, SYNC).await;
        assert!(failures(&s).is_empty(), "{}", brief_status(&s));
        support::eventually("extra-1 pruned", SYNC, || {
            let (live, extra_1) = (live.clone(), extra_1.clone());
            async move { (!exists(&live, &extra_1).await).then_some(()) }
        })
        .await;
        assert!(!exists(&live, &secret_key).await);
        assert!(!exists(&live, &pc_key).await);
        assert!(!exists(&live, &esc_key).await);
        drop(f);
        drop(guard);
    })
    .await;
}

/// The daemon runs with the admin kubeconfig here (cluster-admin): a write the tier's
/// ServiceAccount may not make but the admin could is refused, which only impersonation
/// explains. Without `serviceAccount` the same commit applies.
#[tokio::test]
async fn without_impersonation_the_daemons_identity_would_have_written_it() {
    support::with_namespace("sa-ctl", |client, _ns| async move {
        let live = ApiLive::new(client.clone());
        let mut files = base_files(IMAGE_1);
        files.push(("base/secret.yaml".into(), SECRET.into()));
        let (f, _) = Fixture::new(
            "sa-ctl",
            files,
            TierExtra(vec![PLAINTEXT_SECRET_WARNS.to_owned()]),
        )
        .started(SYNC)
        .await;
        assert!(
            exists(&live, &key("v1", "Secret", Some(&f.tier), "db")).await,
            "the daemon's own identity writes Secrets"
        );
    })
    .await;
}

#[tokio::test]
async fn a_tier_whose_service_account_does_not_exist_is_named_by_validate_and_writes_nothing() {
    support::with_namespace("sa-none", |client, sa_ns| async move {
        let live = ApiLive::new(client.clone());
        let mut f = Fixture::new(
            "sa-none",
            base_files(IMAGE_1),
            TierExtra(vec![format!("serviceAccount: {sa_ns}/nobody")]),
        );
        let config = f.config.display().to_string();
        let kubeconfig = support::kubeconfig().display().to_string();
        let out = support::gitopsd(&["validate", "--config", &config, "--kubeconfig", &kubeconfig]);
        let text = support::stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}{}", support::stderr(&out));
        assert!(
            text.contains(&format!(
                "serviceAccount {sa_ns}/nobody does not exist: every write of the tier would be refused"
            )),
            "{text}"
        );

        let head = f.head();
        f.start();
        let tier = f.tier.clone();
        let s = f
            .wait_status("the refused first sync", SYNC, |s| {
                (s["revision"] == head.as_str() && !failures(s).is_empty()).then(|| s.clone())
            })
            .await;
        let msgs = failures(&s);
        assert!(
            msgs.iter().any(|m| m.starts_with(&format!("Namespace {tier}: "))
                && m.contains(&format!("system:serviceaccount:{sa_ns}:nobody may not patch namespaces"))),
            "{msgs:?}"
        );
        // Nothing of the tier reached the cluster: not even its Namespace.
        assert!(!exists(&live, &key("v1", "Namespace", None, &tier)).await);
    })
    .await;
}
