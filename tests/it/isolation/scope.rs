//! Issue 13, items 1 and 2: scope is judged on what will be applied, and comes from the API
//! server. A tier without `clusterScoped` may not reach cluster-wide objects: not by a tier.yaml
//! patch that turns a ConfigMap into a ClusterRoleBinding, not by a cluster-scoped kind that a
//! hard-coded list missed, not by a cluster-scoped CRD installed in the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use gitopsd::apply::{Applier, ApplyItem, Outcome};
use gitopsd::config::ApplyConfig;
use gitopsd::live::{ApiLive, LiveObjects, ObjectKey};
use gitopsd::render::{KindScope, KindScopes};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::reconcile_support::{Fixture, TierExtra, configmap, random_suffix};
use crate::support::{self, gitopsd, stderr, stdout};

/// Long enough for the first sync of a few ConfigMaps on a busy machine.
const FIRST_SYNC: Duration = Duration::from_secs(120);
/// Long enough for a commit to be fetched and rendered.
const CHANGE: Duration = Duration::from_secs(90);

/// The cluster-scoped kinds the old hard-coded list missed (issue 13, item 2), each with a
/// manifest the API server would accept (so "nothing was created" means something).
fn missed_kinds(name: &str, ip: &str) -> Vec<(&'static str, &'static str, String, Value)> {
    let rule = json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]});
    vec![
        (
            "admissionregistration.k8s.io/v1",
            "MutatingAdmissionPolicy",
            name.to_owned(),
            json!({"spec": {"failurePolicy": "Ignore", "reinvocationPolicy": "Never",
                "matchConstraints": {"resourceRules": [rule]},
                "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{}"}}]}}),
        ),
        (
            "storage.k8s.io/v1",
            "VolumeAttributesClass",
            name.to_owned(),
            json!({"driverName": "scope.gitopsd.example.com"}),
        ),
        (
            "networking.k8s.io/v1",
            "ServiceCIDR",
            name.to_owned(),
            json!({"spec": {"cidrs": ["10.250.250.0/28"]}}),
        ),
        (
            "networking.k8s.io/v1",
            "IPAddress",
            ip.to_owned(),
            json!({"spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": name}}}),
        ),
        (
            "resource.k8s.io/v1",
            "DeviceClass",
            name.to_owned(),
            json!({"spec": {}}),
        ),
        (
            "resource.k8s.io/v1",
            "ResourceSlice",
            name.to_owned(),
            json!({"spec": {"driver": "scope.gitopsd.example.com", "allNodes": true,
                "pool": {"name": "p", "generation": 1, "resourceSliceCount": 1}, "devices": []}}),
        ),
        (
            "certificates.k8s.io/v1",
            "ClusterTrustBundle",
            name.to_owned(),
            json!({"spec": {"trustBundle": ""}}),
        ),
        (
            "storagemigration.k8s.io/v1",
            "StorageVersionMigration",
            name.to_owned(),
            json!({"spec": {"resource": {"group": "", "resource": "configmaps"}}}),
        ),
        // Beta versions the API server does not serve by default: their scope is unknown
        // to it, so they block as such (and could not be applied anyway).
        (
            "certificates.k8s.io/v1beta1",
            "ClusterTrustBundle",
            format!("{name}-beta"),
            json!({"spec": {"trustBundle": ""}}),
        ),
        (
            "storagemigration.k8s.io/v1beta1",
            "StorageVersionMigration",
            format!("{name}-beta"),
            json!({"spec": {"resource": {"group": "", "resource": "configmaps"}}}),
        ),
    ]
}

fn manifest(api_version: &str, kind: &str, name: &str, rest: &Value) -> Value {
    let mut m = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    if let (Some(m), Some(rest)) = (m.as_object_mut(), rest.as_object()) {
        for (k, v) in rest {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn yaml_docs(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// What the API server serves: (apiVersion, kind) -> scope.
async fn served(client: &Client) -> KindScopes {
    gitopsd::discovery::discover(client)
        .await
        .expect("discovery")
}

/// Whether `kind`/`name` exists, asked with the test's own client (`None`: not served).
async fn exists(live: &ApiLive, api_version: &str, kind: &str, name: &str) -> Option<bool> {
    let key = ObjectKey {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: None,
        name: name.to_owned(),
    };
    match live.get(&key).await {
        Ok(found) => Some(found.is_some()),
        Err(gitopsd::live::LiveError::UnknownKind { .. }) => None,
        Err(e) => panic!("get {kind} {name}: {e}"),
    }
}

/// A cluster-scoped CRD of a unique group, installed for one test and deleted when dropped.
struct ClusterCrd {
    name: String,
    group: String,
    kind: &'static str,
}

impl ClusterCrd {
    async fn install(client: &Client, suffix: &str) -> ClusterCrd {
        let group = format!("scope-{suffix}.isolation.gitopsd.example.com");
        let name = format!("probes.{group}");
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": group, "scope": "Cluster",
                "names": {"kind": "Probe", "plural": "probes", "singular": "probe", "listKind": "ProbeList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))
        .expect("crd");
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        api.create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("create CRD {name}: {e}"));
        let c = ClusterCrd {
            name: name.clone(),
            group,
            kind: "Probe",
        };
        support::eventually("the CRD to be served", Duration::from_secs(60), || {
            let client = client.clone();
            let av = c.api_version();
            async move {
                let scopes = gitopsd::discovery::discover(&client).await.ok()?;
                (scopes.get(&av, "Probe") == Some(KindScope::Cluster)).then_some(())
            }
        })
        .await;
        c
    }

    fn api_version(&self) -> String {
        format!("{}/v1", self.group)
    }
}

impl Drop for ClusterCrd {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A client of its own: the test's runs on the runtime this drop may be blocking.
        support::cleanup_blocking(move |client| async move {
            let api: Api<CustomResourceDefinition> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        });
    }
}

/// A repo + gitopsd.yaml for `validate`: one tier `t` with namespace `ns`, not cluster-scoped.
fn validate_repo(ns: &str, tier_yaml: &str, base: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("tiers/t/tier.yaml", tier_yaml);
    for (file, text) in base {
        write(&format!("base/{file}"), text);
    }
    write(
        "gitopsd.yaml",
        &format!(
            "source: {{url: .}}\ntiers:\n  - {{name: t, ref: main, namespaces: [{ns}], clusterScoped: false}}\n"
        ),
    );
    dir
}

fn validate_args(dir: &tempfile::TempDir) -> Vec<String> {
    vec![
        "validate".into(),
        "--config".into(),
        dir.path().join("gitopsd.yaml").display().to_string(),
        "--repo".into(),
        dir.path().display().to_string(),
    ]
}

fn run(args: &[String], extra: &[&str]) -> (Option<i32>, String) {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let out = gitopsd(&all);
    (out.status.code(), stdout(&out) + &stderr(&out))
}

/// The tier.yaml patch of attack 1: the ConfigMap `victim` becomes a ClusterRoleBinding.
fn attack_1_tier_yaml(ns: &str, crb: &str) -> String {
    format!(
        "namespace: {ns}\npatches:\n  - target: {{kind: ConfigMap, name: victim}}\n    merge:\n      \
         apiVersion: rbac.authorization.k8s.io/v1\n      kind: ClusterRoleBinding\n      \
         metadata: {{name: {crb}}}\n      data: null\n      \
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\n      \
         subjects: [{{kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}}]\n"
    )
}

#[tokio::test]
async fn attack_1_validate_refuses_a_patch_that_turns_a_configmap_into_a_clusterrolebinding() {
    let client = support::client().await;
    let suffix = random_suffix();
    let crb = format!("scope-atk1-cli-{suffix}");
    let dir = validate_repo(
        "shop",
        &attack_1_tier_yaml("shop", &crb),
        &[("victim.yaml", configmap("victim", &[]))],
    );
    let args = validate_args(&dir);
    let kubeconfig = support::kubeconfig().display().to_string();
    for extra in [
        &["--kubeconfig", kubeconfig.as_str()][..],
        &["--offline"][..],
    ] {
        let (code, text) = run(&args, extra);
        assert_eq!(code, Some(1), "{extra:?}: {text}");
        assert!(
            text.contains("tier t: error: tiers/t/tier.yaml line 3: patches[0] changes apiVersion of ConfigMap shop/victim from \"v1\" to \"rbac.authorization.k8s.io/v1\"; a patch may not change the apiVersion, kind, metadata.name or metadata.namespace of its target"),
            "{extra:?}: {text}"
        );
    }
    let crbs: Api<ClusterRoleBinding> = Api::all(client);
    assert!(crbs.get_opt(&crb).await.expect("get").is_none());
}

/// A fixture whose tier may not create cluster-scoped objects: its Namespace is made by the
/// test (the Fixture deletes it), not by the tier.
async fn not_cluster_scoped_fixture(test: &str, client: &Client) -> Fixture {
    let f = Fixture::new(
        test,
        vec![("base/victim.yaml".to_owned(), configmap("victim", &[]))],
        TierExtra::default(),
    );
    let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    std::fs::write(
        &f.config,
        config.replace("clusterScoped: true", "clusterScoped: false"),
    )
    .expect("write gitopsd.yaml");
    f.remove_files(&[&format!("tiers/{}/namespace.yaml", f.tier)]);
    f.commit("the tier namespace is made outside the tier");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(f.tier.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {}: {e}", f.tier));
    f
}

/// Waits until the daemon has fetched `revision` and refused it with a lastError containing
/// `why`; returns the lastError. The revision applied stays `good`.
async fn refused(f: &Fixture, revision: &str, good: &str, why: &str) -> String {
    let status = f
        .wait_status(
            &format!("revision {revision} to be refused: {why}"),
            CHANGE,
            |s| {
                let err = s["lastError"].as_str().unwrap_or_default();
                (s["sourceRevision"] == revision
                    && s["sync"] == "Failed"
                    && err.contains(revision)
                    && err.contains(why))
                .then(|| s.clone())
            },
        )
        .await;
    assert_eq!(status["revision"], good, "the last good revision stays");
    status["lastError"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_the_daemon_refuses_the_patch_and_keeps_the_last_good_set() {
    let client = support::client().await;
    let mut f = not_cluster_scoped_fixture("scope-atk1", &client).await;
    let good = f.head();
    f.start();
    f.wait_synced_healthy(&good, FIRST_SYNC).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let before = cms.get("victim").await.expect("victim applied");

    let crb = format!("scope-atk1-{}", random_suffix());
    f.write_files(&vec![(
        format!("tiers/{}/tier.yaml", f.tier),
        attack_1_tier_yaml(&f.tier, &crb),
    )]);
    let attack = f.commit("turn the ConfigMap into a ClusterRoleBinding to cluster-admin");
    let why = format!(
        "tiers/{}/tier.yaml line 3: patches[0] changes apiVersion of ConfigMap {}/victim from \"v1\" to \"rbac.authorization.k8s.io/v1\"",
        f.tier, f.tier
    );
    refused(&f, &attack, &good, &why).await;
    let s = f.status();
    assert!(
        !(s["revision"] == attack.as_str() && s["sync"] == "Synced"),
        "{s}"
    );

    // A later good commit is applied: the daemon has reconciled since, and still nothing.
    f.write_files(&vec![(
        format!("tiers/{}/tier.yaml", f.tier),
        format!("namespace: {}\nlabels: {{env: later}}\n", f.tier),
    )]);
    let later = f.commit("back to a plain tier");
    f.wait_synced_healthy(&later, CHANGE).await;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    assert!(
        crbs.get_opt(&crb).await.expect("get").is_none(),
        "the ClusterRoleBinding {crb} reached the cluster"
    );
    let after = cms.get("victim").await.expect("victim stays");
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.data, before.data);
}

#[tokio::test]
async fn attack_2_validate_refuses_cluster_scoped_kinds_a_list_missed_and_unserved_ones() {
    let client = support::client().await;
    let live = ApiLive::new(client.clone());
    let suffix = random_suffix();
    let crd = ClusterCrd::install(&client, &suffix).await;
    let name = format!("scope-atk2-cli-{suffix}");
    let kinds = missed_kinds(&name, "10.250.251.7");
    let mut objects: Vec<Value> = kinds
        .iter()
        .map(|(av, k, n, rest)| manifest(av, k, n, rest))
        .collect();
    objects.push(manifest(&crd.api_version(), crd.kind, &name, &json!({})));
    // A List is expanded as kubectl does; its items are checked like any object, so a
    // cluster-scoped item in a List is refused by its own name and the List's item index.
    objects.push(json!({"apiVersion": "v1", "kind": "List", "metadata": {"name": name},
        "items": [manifest("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &name, &json!({}))]}));
    let dir = validate_repo(
        "shop",
        "namespace: shop\n",
        &[("all.yaml", yaml_docs(&objects))],
    );
    let args = validate_args(&dir);
    let kubeconfig = support::kubeconfig().display().to_string();
    let (code, text) = run(&args, &["--kubeconfig", &kubeconfig]);
    assert_eq!(code, Some(1), "{text}");
    let scopes = served(&client).await;
    let mut expected = 0;
    for (av, kind, n, _) in &kinds {
        let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        // Never stamped with the tier namespace: the object is named without one.
        let line = match scopes.get(av, kind) {
            Some(KindScope::Cluster) => format!(
                "{kind} {n}: {kind} (group {group}) is cluster-scoped and tier \"t\" may not create cluster-scoped objects (set clusterScoped: true) [scope/cluster-scoped]"
            ),
            Some(KindScope::Namespaced) => panic!("{av} {kind} is namespaced in this cluster?"),
            None => format!(
                "{kind} {n}: kind {kind} (group {group}) at apiVersion {av} is not served by the cluster"
            ),
        };
        assert!(text.contains(&line), "{av} {kind}: {line}\n{text}");
        expected += 1;
    }
    assert!(
        text.contains(&format!(
            "Probe {name}: Probe (group {}) is cluster-scoped and tier \"t\" may not create cluster-scoped objects",
            crd.group
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "items[0]: ClusterRoleBinding {name}: ClusterRoleBinding (group rbac.authorization.k8s.io) is cluster-scoped and tier \"t\" may not create cluster-scoped objects"
        )),
        "{text}"
    );
    expected += 2;
    assert!(
        text.contains(&format!("tier t: {expected} objects, {expected} blocking")),
        "{text}"
    );

    // Offline, the CRD's kind is unknown (it is not in the tier): it blocks all the same.
    let (code, text) = run(&args, &["--offline"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "Probe {name}: kind Probe (group {}) at apiVersion {} is not a Kubernetes 1.37 kind and no CustomResourceDefinition in the tier defines it",
            crd.group,
            crd.api_version()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("tier t: {expected} objects, {expected} blocking")),
        "{text}"
    );
    for (av, kind, n, _) in &kinds {
        assert_ne!(exists(&live, av, kind, n).await, Some(true), "{kind} {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_2_the_daemon_refuses_a_crd_kind_installed_after_it_started_and_the_missed_kinds() {
    let client = support::client().await;
    let live = ApiLive::new(client.clone());
    let mut f = not_cluster_scoped_fixture("scope-atk2", &client).await;
    let good = f.head();
    f.start();
    f.wait_synced_healthy(&good, FIRST_SYNC).await;

    // The CRD appears after the daemon's discovery snapshot: the render's miss refreshes it,
    // so the kind is refused as cluster-scoped (not merely as unknown).
    let suffix = random_suffix();
    let crd = ClusterCrd::install(&client, &suffix).await;
    let name = format!("scope-atk2-{suffix}");
    f.write_files(&vec![(
        "base/probe.yaml".to_owned(),
        yaml_docs(&[manifest(&crd.api_version(), crd.kind, &name, &json!({}))]),
    )]);
    let probe = f.commit("a cluster-scoped custom resource");
    // (If the render came before discovery saw the CRD, the kind is refused as unknown first,
    // and rendered again once discovery answers differently.)
    let why = format!(
        "blocked by 1 finding(s); first: error: base/probe.yaml line 1: Probe {name}: Probe (group {}) is cluster-scoped and tier \"{}\" may not create cluster-scoped objects (set clusterScoped: true) [scope/cluster-scoped]",
        crd.group, f.tier
    );
    refused(&f, &probe, &good, &why).await;

    let kinds = missed_kinds(&name, "10.250.251.9");
    let objects: Vec<Value> = kinds
        .iter()
        .map(|(av, k, n, rest)| manifest(av, k, n, rest))
        .collect();
    f.write_files(&vec![("base/missed.yaml".to_owned(), yaml_docs(&objects))]);
    let missed = f.commit("the cluster-scoped kinds the old list missed");
    let why = format!("blocked by {} finding(s)", kinds.len() + 1);
    refused(&f, &missed, &good, &why).await;

    // A later good commit is applied: nothing of the refused ones exists.
    f.remove_files(&["base/probe.yaml", "base/missed.yaml"]);
    f.write_files(&vec![(
        "base/victim.yaml".to_owned(),
        configmap("victim", &[("later", "yes")]),
    )]);
    let later = f.commit("only the ConfigMap again");
    f.wait_synced_healthy(&later, CHANGE).await;
    for (av, kind, n, _) in &kinds {
        assert_ne!(exists(&live, av, kind, n).await, Some(true), "{kind} {n}");
    }
    assert_eq!(
        exists(&live, &crd.api_version(), crd.kind, &name).await,
        Some(false)
    );
}

#[tokio::test]
async fn the_applier_refuses_a_namespace_on_a_cluster_scoped_kind() {
    let client = support::client().await;
    let crb = format!("scope-applier-{}", random_suffix());
    let manifest = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": crb, "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "Group", "name": "nobody", "apiGroup": "rbac.authorization.k8s.io"}]
    });
    let applier = Applier::new(
        ApiLive::new(client.clone()),
        "scope-applier",
        &ApplyConfig::default(),
    );
    let results = applier
        .apply(
            vec![ApplyItem {
                manifest: &manifest,
                previous_resource_version: None,
                take_fields: Vec::new(),
            }],
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(results[0].outcome, Outcome::Failed);
    let message = results[0].message.clone().unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "ClusterRoleBinding default/{crb}: not applied: rbac.authorization.k8s.io/v1 ClusterRoleBinding is cluster-scoped in the API server, but the object names namespace \"default\"; the namespace is never dropped or guessed (fix metadata.namespace in the manifest)"
        )
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(client);
    assert!(crbs.get_opt(&crb).await.expect("get").is_none());
}

/// The built-in table (what `--offline` knows) against the live API server: every kind the
/// server serves, CRDs aside, is in the table with the same scope. A Kubernetes upgrade that
/// adds a kind fails here until `scripts/builtin-kinds.sh` is run again.
#[tokio::test]
async fn the_builtin_table_matches_discovery() {
    let client = support::client().await;
    let crd_groups = || {
        let client = client.clone();
        async move {
            let api: Api<CustomResourceDefinition> = Api::all(client);
            api.list(&Default::default())
                .await
                .expect("list CRDs")
                .items
                .into_iter()
                .map(|c| c.spec.group)
                .collect::<BTreeSet<String>>()
        }
    };
    // CRDs other tests install come and go: a group seen as a CRD's before or after discovery
    // is not Kubernetes' own. One created and deleted between the two lists can still be in
    // discovery, so a disagreement is looked at again until it persists: a kind Kubernetes
    // serves stays, a test's CRD leaves discovery.
    let builtin = KindScopes::builtin();
    let compared = support::eventually_every(
        "the built-in table to agree with the API server (run scripts/builtin-kinds.sh)",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(2),
        || async {
            let mut groups = crd_groups().await;
            let live = served(&client).await;
            groups.extend(crd_groups().await);
            let mut wrong = Vec::new();
            let mut compared = 0;
            for (av, kind, scope) in live.entries() {
                let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
                if groups.contains(group) {
                    continue;
                }
                compared += 1;
                match builtin.get(av, kind) {
                    Some(s) if s == scope => {}
                    other => {
                        wrong.push(format!("{av} {kind}: served {scope:?}, built-in {other:?}"))
                    }
                }
            }
            if wrong.is_empty() {
                Ok(compared)
            } else {
                Err(format!("disagreements: {wrong:#?}"))
            }
        },
    )
    .await;
    assert!(compared > 40, "only {compared} kinds compared");
}
