//! Why one object could not be applied or deleted, in a sentence that says what to do.

use std::time::Duration;

use serde_json::Value;

use super::*;

/// Why one object could not be applied or deleted. Never returned for a batch: each becomes
/// the [`ObjectResult`] of its object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{object}: the manifest has no {missing}; it cannot be applied")]
    BadManifest {
        object: String,
        missing: &'static str,
    },
    #[error(
        "{object}: {api_version} {kind} is not served by the API server; apply its CustomResourceDefinition first (in this tier or one synced before it)"
    )]
    NotServed {
        object: String,
        api_version: String,
        kind: String,
    },
    #[error(
        "{object}: not {verb}: {api_version} {kind} is {scope} in the API server, but the object {has}; the namespace is never dropped or guessed (fix metadata.namespace in the manifest)"
    )]
    ScopeMismatch {
        object: String,
        verb: &'static str,
        api_version: String,
        kind: String,
        scope: &'static str,
        has: String,
    },
    #[error("{object}: {source}")]
    Live {
        object: String,
        #[source]
        source: LiveError,
    },
    #[error(
        "{object}: not applied: its CustomResourceDefinition {crd} was not Established within {timeout:?}{detail}; check the CRD's status conditions"
    )]
    CrdNotEstablished {
        object: String,
        crd: String,
        timeout: Duration,
        detail: NotEstablished,
    },
    #[error(
        "{object}: conflict: {owners}; set apply.forceConflicts: true for tier {tier}, or remove the field from the other manager"
    )]
    Conflict {
        object: String,
        tier: String,
        owners: String,
        conflicts: Vec<Conflict>,
    },
    #[error(
        "{object}: {fields} {verb} immutable; add {kind} to apply.recreateOnImmutable for tier {tier} to allow delete-and-recreate"
    )]
    Immutable {
        object: String,
        kind: String,
        tier: String,
        fields: String,
        verb: &'static str,
    },
    #[error(
        "{object}: deleted to recreate it ({fields} immutable) but still present after {timeout:?}; a finalizer may hold it, and it will be applied again on the next sync"
    )]
    NotGone {
        object: String,
        fields: String,
        timeout: Duration,
    },
    #[error(
        "{object}: not deleted: the object was replaced since it was read (its uid changed), so it is left alone"
    )]
    Replaced { object: String },
    /// A 403: RBAC (of the tier's ServiceAccount, with `serviceAccount` set) or an admission
    /// plugin refused the write.
    #[error("{object}: {what} refused by the API server (403 Forbidden): {why}; {fix}")]
    Forbidden {
        object: String,
        what: &'static str,
        /// Who may not do what, or the server's message where it is not RBAC's.
        why: String,
        fix: String,
        refusal: Option<crate::apply::Refusal>,
    },
    #[error("{object}: {what} failed: {detail}")]
    Api {
        object: String,
        what: &'static str,
        detail: String,
    },
}

impl ApplyError {
    pub(super) fn api(object: &str, what: &'static str, e: &kube::Error) -> ApplyError {
        if let kube::Error::Api(s) = e
            && s.code == 403
        {
            return ApplyError::forbidden(object, what, &s.message);
        }
        ApplyError::Api {
            object: object.to_owned(),
            what,
            detail: describe_error(e),
        }
    }

    pub(super) fn forbidden(object: &str, what: &'static str, message: &str) -> ApplyError {
        let refusal = crate::apply::forbidden::parse(message);
        let (why, fix) = match &refusal {
            Some(r) => (r.to_string(), r.fix()),
            None if message
                .contains("is attempting to grant RBAC permissions not currently held") =>
            {
                // RBAC's escalation check: a Role or binding that grants more than the writer
                // holds. The rules follow the colon, one per line.
                let rules = message
                    .split_once("not currently held:")
                    .map_or("", |(_, r)| r)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                (
                    format!(
                        "RBAC's escalation check: the writer may not grant permissions it does not hold itself ({rules})"
                    ),
                    "a tier may grant only what its serviceAccount holds in that namespace: remove the grant from the config repo, or, if it is meant, give the tier's ServiceAccount those permissions first".to_owned(),
                )
            }
            None => {
                // Not RBAC's wording: an admission plugin, or (server-side apply creating an
                // object) the create check, whose message carries no verb.
                let needs = if what.starts_with("delete") {
                    "`delete`"
                } else {
                    "`patch`, and `create` while the object does not exist"
                };
                let why = if message.trim_end().ends_with("is forbidden:") {
                    format!("{} (no reason given: likely RBAC)", message.trim_end())
                } else {
                    message.trim_end().to_owned()
                };
                (
                    why,
                    format!(
                        "if RBAC refused it, the identity the tier writes as (its serviceAccount) needs {needs} on this object's resource"
                    ),
                )
            }
        };
        ApplyError::Forbidden {
            object: object.to_owned(),
            what,
            why,
            fix,
            refusal,
        }
    }

    pub(super) fn into_result(self, key: ObjectKey) -> ObjectResult {
        self.into_result_of(key, None)
    }

    /// The failed result; for a Secret, with any of its values the message echoes masked
    /// (`manifest`: the values to look for, when known).
    pub(super) fn into_result_of(self, key: ObjectKey, manifest: Option<&Value>) -> ObjectResult {
        let conflicts = match &self {
            ApplyError::Conflict { conflicts, .. } => conflicts.clone(),
            _ => Vec::new(),
        };
        let message = if key.kind == "Secret" {
            super::status::mask_secret_message(&self.to_string(), manifest)
        } else {
            self.to_string()
        };
        ObjectResult {
            key,
            outcome: Outcome::Failed,
            message: Some(message),
            conflicts,
            applied: None,
        }
    }
}

/// A kube error in a sentence: the API server's message and code, not the Debug dump.
pub(super) fn describe_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            let hint = match s.code {
                429 => Some("the API server is throttling these writes (API priority and fairness): gitopsd stopped this sync's remaining applies and tries again at the next reconcile; if it lasts, check the FlowSchema and PriorityLevelConfiguration that match the writer (gitopsd, or the tier's serviceAccount)".to_owned()),
                _ => webhook_hint(&s.message),
            }
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
            format!("{} (HTTP {} {}){hint}", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

/// What to do when an admission webhook stood in the way, from the API server's wording:
/// it either could not reach the webhook (its service is down or hung; a `Fail` policy then
/// refuses every write it matches) or the webhook denied the object.
pub(super) fn webhook_hint(message: &str) -> Option<String> {
    let quoted = |after: &str| {
        let rest = message.split_once(after)?.1;
        let name = rest.strip_prefix('"')?.split('"').next()?;
        Some(crate::escape::escape_line(name).into_owned())
    };
    if let Some(name) = quoted("failed calling webhook ") {
        return Some(format!(
            "the admission webhook \"{name}\" did not answer: check that the service behind it is running (kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o wide); gitopsd applies the object on a later reconcile and prunes nothing until the whole revision is in"
        ));
    }
    quoted("admission webhook ")
        .filter(|_| message.contains("denied the request"))
        .map(|name| {
            format!(
                "the admission webhook \"{name}\" refused the object: change it in the config repo to satisfy the webhook's policy, or change the policy"
            )
        })
}
