//! Shared by the fault tests: a server that never answers, an admission webhook pointing at
//! it, and the removal of cluster-scoped objects however a test ends.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use gitopsd::live::ObjectKey;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use crate::support::ClusterScoped;

/// The label a ConfigMap carries to go through [`hung_webhook`] `mark`'s webhook.
pub const HANG_LABEL: &str = "gitopsd-test-hang";

/// A TCP server on loopback that accepts every connection and never sends a byte: the TLS
/// handshake a client starts never completes. Connections are held open until the process
/// ends, as a hung server holds them.
pub fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local addr").port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Ok(mut h) = held.lock() {
                h.push(stream);
            }
        }
    });
    port
}

/// A validating webhook `hang.gitopsd.test` with `failurePolicy: Fail` whose server never
/// answers: every create or update of a ConfigMap labelled `HANG_LABEL: mark` waits
/// `timeout_seconds` and is refused. Only such ConfigMaps meet it, so other tests' objects
/// never do. Removed when the returned guard drops.
pub async fn hung_webhook(client: &Client, mark: &str, timeout_seconds: u32) -> ClusterScoped {
    let port = silent_server();
    let name = format!("gitopsd-test-hang-{mark}");
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let hook: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "hang.gitopsd.test",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate")},
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"],
            }],
            "objectSelector": {"matchLabels": {HANG_LABEL: mark}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout_seconds,
        }],
    }))
    .expect("webhook configuration");
    let guard = ClusterScoped(vec![ObjectKey {
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingWebhookConfiguration".into(),
        namespace: None,
        name: name.clone(),
    }]);
    hooks
        .create(&PostParams::default(), &hook)
        .await
        .expect("create the webhook configuration");
    guard
}
