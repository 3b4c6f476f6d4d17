//! Issue 21, items 3, 4, 6 and 9c, against the real daemon (`gitopsd run`) on the local
//! cluster: no prune after a partial failure, an apiVersion change keeps the object, a Job with
//! `ttlSecondsAfterFinished` runs once per revision, an object deleted again and again is given
//! up, and a refused prune is reported.
//!
//! Each test has its own repo, tier, namespaces and daemon (tests/reconcile_support). Negative
//! assertions wait until the daemon has provably reconciled again (`lastReconcileAt` moved),
//! never a fixed sleep.

use crate::reconcile_support;
use crate::support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PatchParams;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, brief_status, random_suffix};
use serde_json::{Value, json};

const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(45);

fn configmaps(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\ndata:\n  n: \"{i}\"\n")
        })
        .collect()
}

async fn existing(client: &Client, ns: &str, prefix: &str) -> BTreeSet<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list configmaps")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A base of the standard fixture plus 10 ConfigMaps `doomed-*` and 12 `kept-*`: removing the
/// 10 deletes 10 of 30 objects, under the prune guard's 50%.
fn base_with_doomed() -> reconcile_support::Files {
    let mut base = base_files(IMAGE_1);
    base.push(("base/doomed.yaml".into(), configmaps("doomed", 10)));
    base.push(("base/kept.yaml".into(), configmaps("kept", 12)));
    base
}

/// Item 3: a commit removes 10 objects and adds one the API server rejects; nothing is
/// pruned while the sync fails, over several reconciles; once git is fixed, the 10 go.
async fn no_prune_while_one_object_fails(test: &str, bad: &str, expect_sync: &str) {
    let client = support::client().await;
    let (f, _) = Fixture::new(test, base_with_doomed(), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    assert_eq!(existing(&client, &f.tier, "doomed-").await.len(), 10);

    f.remove_files(&["base/doomed.yaml"]);
    f.write_files(&vec![("base/bad.yaml".into(), bad.to_owned())]);
    let second = f.commit("remove 10 ConfigMaps, add an object the API server rejects");
    let s = f
        .wait_status(
            &format!("sync {expect_sync} at the new commit"),
            CHANGE,
            |s| {
                let at_second = s["sourceRevision"] == second.as_str();
                (at_second && s["sync"] == expect_sync && !s["lastError"].is_null())
                    .then(|| s.clone())
            },
        )
        .await;
    let error = s["lastError"].as_str().unwrap_or_default().to_owned();
    // Several reconciles after the failure: still nothing pruned.
    let s = f.wait_reconciles(3, CHANGE).await;
    assert_eq!(
        existing(&client, &f.tier, "doomed-").await.len(),
        10,
        "nothing may be pruned while the sync fails ({error}); status: {}",
        brief_status(&s)
    );
    assert_eq!(s["sync"], expect_sync, "{}", brief_status(&s));
    let pruned: u64 = reconcile_support::records(&s)
        .iter()
        .filter_map(|r| r["outcomes"]["pruned"].as_u64())
        .sum();
    assert_eq!(pruned, 0, "{}", brief_status(&s));

    // Git fixed: the whole sync succeeds, and then the 10 are pruned.
    f.remove_files(&["base/bad.yaml"]);
    let third = f.commit("drop the rejected object");
    f.wait_synced_healthy(&third, CHANGE).await;
    support::eventually("the 10 ConfigMaps pruned", CHANGE, || {
        let client = client.clone();
        let ns = f.tier.clone();
        async move {
            existing(&client, &ns, "doomed-")
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;
    assert_eq!(existing(&client, &f.tier, "kept-").await.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_deployment_beside_removed_objects_prunes_nothing() {
    // Valid YAML, valid for gitopsd, refused by the API server (negative replicas).
    let bad = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: -1
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: broken
          image: registry.example.com/shop/broken:1.0.0
"#;
    no_prune_while_one_object_fails("badapply", bad, "OutOfSync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_of_an_unserved_kind_beside_removed_objects_prunes_nothing() {
    let group = format!("unserved-{}.example.com", random_suffix());
    let bad =
        format!("apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  size: 3\n");
    no_prune_while_one_object_fails("unserved", &bad, "Failed").await;
}

/// Deletes a cluster-scoped CRD the test's tier created, however the test ends.
struct CrdCleanup(String);

impl Drop for CrdCleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        support::cleanup_blocking(move |client| async move {
            let api: Api<CustomResourceDefinition> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        });
    }
}

fn hpa(version: &str) -> String {
    let spec = if version == "v1" {
        "  targetCPUUtilizationPercentage: 80\n".to_owned()
    } else {
        "  metrics:\n    - type: Resource\n      resource:\n        name: cpu\n        target: {type: Utilization, averageUtilization: 80}\n".to_owned()
    };
    format!(
        "apiVersion: autoscaling/{version}\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: api\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api}}\n  minReplicas: 2\n  maxReplicas: 3\n{spec}"
    )
}

fn crd(group: &str) -> String {
    let version = |name: &str, storage: bool| {
        format!(
            "    - name: {name}\n      served: true\n      storage: {storage}\n      schema:\n        openAPIV3Schema:\n          type: object\n          properties:\n            spec:\n              type: object\n              x-kubernetes-preserve-unknown-fields: true\n"
        )
    };
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}\n  versions:\n{}{}",
        version("v1alpha1", false),
        version("v1", true)
    )
}

fn widget(group: &str, version: &str) -> String {
    format!("apiVersion: {group}/{version}\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 3\n")
}

/// Item 4: an HPA moved from autoscaling/v1 to autoscaling/v2, and a custom resource moved from
/// v1alpha1 to v1 of its CRD (both served), keep their uid: configured, never pruned and
/// created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_version_change_keeps_the_live_object() {
    let client = support::client().await;
    let group = format!("inv{}.example.com", random_suffix());
    let _crd = CrdCleanup(format!("widgets.{group}"));
    let mut base = base_files(IMAGE_1);
    base.push(("base/hpa.yaml".into(), hpa("v1")));
    base.push(("base/crd.yaml".into(), crd(&group)));
    base.push(("base/widget.yaml".into(), widget(&group, "v1alpha1")));
    let mut f = Fixture::new("apiversion", base, TierExtra::default());
    let first = f.head();
    f.start();
    // A CRD and its resource in one first sync: the live cache's wait for the new kind's
    // watches (60 s at most) may pass before the tier syncs.
    f.wait_synced_healthy(&first, FIRST_SYNC * 3).await;

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &f.tier);
    let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &f.tier, &ApiResource::from_gvk(&gvk));
    let hpa_uid = hpas.get("api").await.expect("the HPA").uid();
    let widget_uid = widgets.get("w").await.expect("the Widget").uid();
    assert!(hpa_uid.is_some() && widget_uid.is_some());

    f.write_files(&vec![
        ("base/hpa.yaml".into(), hpa("v2")),
        ("base/widget.yaml".into(), widget(&group, "v1")),
    ]);
    let second = f.commit("move the HPA to autoscaling/v2 and the Widget to v1");
    f.wait_synced_healthy(&second, CHANGE).await;
    let s = f.wait_reconciles(3, CHANGE).await;
    assert_eq!(s["sync"], "Synced", "{}", brief_status(&s));
    let after = hpas.get("api").await.expect("the HPA is still there");
    assert_eq!(
        after.uid(),
        hpa_uid,
        "the HPA was deleted and created again"
    );
    let metrics = serde_json::to_value(&after.spec).expect("HPA spec");
    assert!(
        metrics.pointer("/metrics/0/resource/target/averageUtilization") == Some(&json!(80)),
        "the v2 manifest was applied: {metrics}"
    );
    let w = widgets.get("w").await.expect("the Widget is still there");
    assert_eq!(
        w.uid(),
        widget_uid,
        "the Widget was deleted and created again"
    );
    let pruned: u64 = reconcile_support::records(&s)
        .iter()
        .filter_map(|r| r["outcomes"]["pruned"].as_u64())
        .sum();
    assert_eq!(pruned, 0, "nothing pruned: {}", brief_status(&s));
    // The inventory holds each once, at the version git now has.
    let state = gitopsd::state::StateStore::new(client.clone(), &f.state_ns)
        .load(&f.tier)
        .await
        .expect("the tier state");
    let versions: Vec<&str> = state
        .inventory
        .keys()
        .filter(|k| k.name == "api" && k.kind == "HorizontalPodAutoscaler" || k.kind == "Widget")
        .map(|k| k.api_version.as_str())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions.contains(&"autoscaling/v2"), "{versions:?}");
    assert!(
        versions.contains(&format!("{group}/v1").as_str()),
        "{versions:?}"
    );
}

fn ttl_job(image: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  ttlSecondsAfterFinished: 0
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: migrate
          image: {image}
"#
    )
}

/// Every uid the Job `migrate` had in `ns`, as a watch sees them (its creations).
fn watch_job_uids(
    client: &Client,
    ns: &str,
) -> (Arc<Mutex<BTreeSet<String>>>, tokio::task::JoinHandle<()>) {
    let uids = Arc::new(Mutex::new(BTreeSet::new()));
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let seen = uids.clone();
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().fields("metadata.name=migrate");
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            let jobs = match event {
                Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => vec![j],
                _ => Vec::new(),
            };
            for j in jobs {
                if let Some(uid) = j.uid() {
                    seen.lock().expect("uids").insert(uid);
                }
            }
        }
    });
    (uids, task)
}

/// Item 6: a Job with `ttlSecondsAfterFinished: 0` runs once per revision: deleted by the TTL
/// controller once it completed, it is neither drift nor created again, until git changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_job_runs_once_per_revision() {
    let client = support::client().await;
    let mut base = base_files(IMAGE_1);
    base.push((
        "base/job.yaml".into(),
        ttl_job("registry.example.com/shop/migrate:1"),
    ));
    let mut f = Fixture::new("ttljob", base, TierExtra::default());
    let (uids, watch) = watch_job_uids(&client, &f.tier);
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &f.tier);
    support::eventually(
        "the Job to complete and be deleted by its TTL",
        CHANGE,
        || {
            let jobs = jobs.clone();
            async move { jobs.get_opt("migrate").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    let s = f.wait_reconciles(5, CHANGE).await;
    let created = uids.lock().expect("uids").len();
    assert_eq!(created, 1, "the Job ran once; status: {}", brief_status(&s));
    assert_eq!(s["sync"], "Synced", "{}", brief_status(&s));
    assert_eq!(s["health"], "Healthy", "{}", brief_status(&s));
    let deleted: Vec<&Value> = s["drift"]["items"]
        .as_array()
        .map(|items| items.iter().filter(|i| i["name"] == "migrate").collect())
        .unwrap_or_default();
    assert!(
        deleted.is_empty(),
        "a finished Job is no drift: {deleted:?}"
    );
    let state = gitopsd::state::StateStore::new(client.clone(), &f.state_ns)
        .load(&f.tier)
        .await
        .expect("the tier state");
    assert!(
        state
            .finished_jobs
            .iter()
            .any(|j| j.name == "migrate" && j.revision == first.as_str()),
        "the completion is recorded for the revision: {:?}",
        state.finished_jobs
    );

    // Git changes the Job: it runs once more, for the new revision.
    f.write_files(&vec![(
        "base/job.yaml".into(),
        ttl_job("registry.example.com/shop/migrate:2"),
    )]);
    let second = f.commit("a new migration");
    f.wait_synced_healthy(&second, CHANGE).await;
    support::eventually("the second Job to run", CHANGE, || {
        let n = uids.lock().expect("uids").len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    support::eventually("the second Job to be deleted by its TTL", CHANGE, || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("migrate").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let s = f.wait_reconciles(5, CHANGE).await;
    assert_eq!(uids.lock().expect("uids").len(), 2, "{}", brief_status(&s));
    assert_eq!(s["sync"], "Synced", "{}", brief_status(&s));
    watch.abort();
}

/// Item 6: an object something deletes each time gitopsd creates it again is given up after
/// a few recreations and reported as unconvergeable, naming the deleter where the object's
/// last live copy tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_again_and_again_is_given_up_naming_the_deleter() {
    let client = support::client().await;
    let mut base = base_files(IMAGE_1);
    base.push(("base/reaped.yaml".into(), configmaps("reaped", 1)));
    let (f, _) = Fixture::new("reaped", base, TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    // The "controller": marks the ConfigMap as its own, then deletes it, whenever it exists.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let reaper_api = cms.clone();
    let deletions = Arc::new(Mutex::new(0usize));
    let counted = deletions.clone();
    let reaper = tokio::spawn(async move {
        loop {
            if let Ok(Some(_)) = reaper_api.get_opt("reaped-0").await {
                let patch = json!({"metadata": {"annotations": {"example.com/reaper": "mine"}}});
                let params = PatchParams {
                    field_manager: Some("test-reaper".into()),
                    ..PatchParams::default()
                };
                let _ = reaper_api
                    .patch("reaped-0", &params, &Patch::Merge(&patch))
                    .await;
                // Long enough for the daemon to see the reaper's copy before it goes.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                if reaper_api
                    .delete("reaped-0", &DeleteParams::default())
                    .await
                    .is_ok()
                {
                    *counted.lock().expect("count") += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let given_up = |s: &Value| {
        s["unconvergeable"].as_array().is_some_and(|us| {
            us.iter()
                .any(|u| u["object"]["name"] == "reaped-0" && u["fought"] == "deletion")
        })
    };
    f.wait_status(
        "the deletion fight given up",
        Duration::from_secs(90),
        |s| given_up(s).then_some(()),
    )
    .await;
    // The reaper keeps running: a copy created just before the daemon gave up goes too.
    support::eventually("the ConfigMap gone", CHANGE, || {
        let cms = cms.clone();
        async move { cms.get_opt("reaped-0").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let s = f
        .wait_status("still given up, with the object gone", CHANGE, |s| {
            given_up(s).then(|| s.clone())
        })
        .await;
    // One more reconcile: the reaper's last deletion is counted by then.
    f.wait_reconciles(1, CHANGE).await;
    let deleted = *deletions.lock().expect("count");
    let u = s["unconvergeable"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["object"]["name"] == "reaped-0"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(u["corrections"], 3, "{u}");
    assert!(
        u["manager"]
            .as_str()
            .unwrap_or_default()
            .contains("test-reaper"),
        "the deleter is named: {u}"
    );
    assert_eq!(s["sync"], "OutOfSync", "{}", brief_status(&s));
    // Given up: not created again over more reconciles (the reaper, still running, would
    // have had to delete it again).
    let s = f.wait_reconciles(3, CHANGE).await;
    assert!(
        cms.get_opt("reaped-0").await.expect("get").is_none(),
        "created again after it was given up: {}",
        brief_status(&s)
    );
    assert_eq!(
        *deletions.lock().expect("count"),
        deleted,
        "created again after it was given up: {}",
        brief_status(&s)
    );
    assert!(given_up(&s), "{}", brief_status(&s));
    reaper.abort();
}

/// Item 9c: a refused prune leaves the tier OutOfSync with a message naming how many objects,
/// why and the fix, and records a PruneRefused Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prune_is_reported_in_status_and_events() {
    let client = support::client().await;
    let (f, _) = Fixture::new("refusedprune", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    // 6 of the 8 objects leave git: 75%, over the default maxDeletePercent of 50.
    f.remove_files(&[
        "base/service.yaml",
        "base/api-config.yaml",
        "base/extra-1.yaml",
        "base/extra-2.yaml",
        "base/extra-3.yaml",
        "base/extra-4.yaml",
    ]);
    let second = f.commit("remove most files");
    let s = f
        .wait_status("the refused prune in the status", CHANGE, |s| {
            (s["revision"] == second.as_str() && !s["pruneRefused"].is_null()).then(|| s.clone())
        })
        .await;
    let message = s["pruneRefused"].as_str().unwrap_or_default();
    for needle in [
        "6 objects",
        "maxDeletePercent",
        "75%",
        "raise prune.maxDeletePercent",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message:?}");
    }
    assert_eq!(s["sync"], "OutOfSync", "{}", brief_status(&s));
    assert_eq!(
        s["lastError"].as_str(),
        Some(message),
        "{}",
        brief_status(&s)
    );
    let s = f.wait_reconciles(2, CHANGE).await;
    assert_eq!(s["sync"], "OutOfSync", "still: {}", brief_status(&s));

    let refused = support::eventually("a PruneRefused Event", CHANGE, || async {
        f.state_events(&client, "PruneRefused")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    let note = refused.note.unwrap_or_default();
    assert!(note.contains("6 objects"), "{note}");
    assert!(
        refused.series.is_none(),
        "reported once, not on every sync: {:?}",
        refused.series
    );

    // Bug f (issue 15): the refused prune is not a clean sync: the sync's record carries the
    // refusal as its error, and no SyncSucceeded Event names the revision.
    let record: Value = f
        .wait_status("the sync record of the refused prune", CHANGE, |s| {
            reconcile_support::records(s)
                .into_iter()
                .find(|r| r["revision"] == second.as_str())
        })
        .await;
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("prune refused")),
        "the record of a refused prune says so: {record}"
    );
    let short = &second[..7];
    let succeeded = f.state_events(&client, "SyncSucceeded").await;
    assert!(
        !succeeded
            .iter()
            .any(|e| e.note.as_deref().unwrap_or_default().contains(short)),
        "a refused prune is not a succeeded sync: {succeeded:?}"
    );

    // Putting the files back ends it.
    f.write_files(&base_files(IMAGE_1));
    let third = f.commit("restore the files");
    let s = f.wait_synced_healthy(&third, CHANGE).await;
    assert!(s["pruneRefused"].is_null(), "{}", brief_status(&s));
}
