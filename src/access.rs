//! What a tier's ServiceAccount may do, asked of the API server before a sync would find out:
//! `gitopsd validate --kubeconfig` sends a SubjectAccessReview (authorization.k8s.io/v1) for
//! each permission the tier's desired set needs, and reports each one refused as a finding
//! naming the object, the missing permission and the rule to grant.
//!
//! What a set needs, per object: `patch` (server-side apply is a patch), `create` while the
//! object does not exist (the apply creates it), `delete` with prune on (the object may be
//! pruned later) and for kinds in `apply.recreateOnImmutable`.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::discovery::Scope;
use kube::{Api, Client};
use tracing::debug;

use crate::apply::Refusal;
use crate::config::{ServiceAccountRef, TierConfig};
use crate::live::{ApiLive, LiveError, LiveObjects};
use crate::render::{DesiredObject, DesiredSet};
use crate::validate::{Finding, Level, Rule, ScopeRule};

/// The rule of the findings.
pub const RULE: Rule = Rule::Scope(ScopeRule::ServiceAccountPermission);

/// A verb a tier's write needs, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    /// Why a sync of the tier needs it.
    fn why(self) -> &'static str {
        match self {
            Verb::Create => "the object does not exist yet, and the apply creates it",
            Verb::Patch => "server-side apply is a patch",
            Verb::Delete => "the tier prunes (or recreates) objects of this kind",
        }
    }
}

/// The verbs the tier needs on one object (pure).
pub fn needed(exists: bool, kind: &str, tier: &TierConfig) -> BTreeSet<Verb> {
    let mut verbs = BTreeSet::from([Verb::Patch]);
    if !exists {
        verbs.insert(Verb::Create);
    }
    let pruned = tier.prune.enabled && tier.prune.may_prune_kind(kind);
    if pruned || tier.apply.recreate_on_immutable.iter().any(|k| k == kind) {
        verbs.insert(Verb::Delete);
    }
    verbs
}

/// The groups the API server gives a ServiceAccount (and an impersonated one): the review
/// must name them, or bindings to `system:serviceaccounts` would not count.
fn groups(sa: &ServiceAccountRef) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{}", sa.namespace),
        "system:authenticated".to_owned(),
    ]
}

/// The plural resource of a kind whose CRD is in the same set (not served yet).
fn plural_from_crds(set: &DesiredSet, o: &DesiredObject) -> Option<String> {
    let group = o.key.api_version.split_once('/').map(|(g, _)| g)?;
    set.objects
        .iter()
        .filter(|c| c.key.kind == "CustomResourceDefinition")
        .find(|c| {
            c.manifest.pointer("/spec/group").and_then(|v| v.as_str()) == Some(group)
                && c.manifest
                    .pointer("/spec/names/kind")
                    .and_then(|v| v.as_str())
                    == Some(o.key.kind.as_str())
        })
        .and_then(|c| c.manifest.pointer("/spec/names/plural")?.as_str())
        .map(str::to_owned)
}

fn finding(o: &DesiredObject, level: Level, message: String) -> Finding {
    Finding {
        level,
        rule: RULE,
        location: o.source.to_string(),
        object: o.key.to_string(),
        message,
    }
}

/// A finding about the tier as a whole (no object): shown at the tier's first object.
fn tier_finding(set: &DesiredSet, level: Level, message: String) -> Option<Finding> {
    set.objects.first().map(|o| Finding {
        object: format!("tier {}", set.tier),
        ..finding(o, level, message)
    })
}

/// Checks with SubjectAccessReviews (as the identity of `client`, which needs `create` on
/// `subjectaccessreviews`) that `sa` may write every object of `set`; one finding per
/// permission refused. Objects of kinds the server does not serve and that no CRD in the set
/// defines are left to the schema check.
pub async fn check(
    client: &Client,
    tier: &TierConfig,
    sa: &ServiceAccountRef,
    set: &DesiredSet,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &sa.namespace);
    match accounts.get_opt(&sa.name).await {
        Ok(Some(_)) => {}
        Ok(None) => findings.extend(tier_finding(
            set,
            Level::Block,
            format!(
                "serviceAccount {sa} does not exist: every write of the tier would be refused; create it and bind its Roles (see manifests/core/tier-access.yaml)"
            ),
        )),
        // The reviews below still say what it may do.
        Err(e) => debug!(service_account = %sa, error = %e, "cannot read the ServiceAccount"),
    }
    if let Some(f) = impersonation_finding(client, sa, set).await {
        findings.push(f);
    }

    let live = ApiLive::new(client.clone());
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    for o in &set.objects {
        let group = o
            .key
            .api_version
            .split_once('/')
            .map_or("", |(g, _)| g)
            .to_owned();
        let (resource, namespaced) = match live.resource(&o.key.api_version, &o.key.kind).await {
            Ok((r, scope)) => (r.plural, scope == Scope::Namespaced),
            Err(LiveError::UnknownKind { .. }) => match plural_from_crds(set, o) {
                // A CRD of the set defines it: its scope is the CRD's.
                Some(plural) => (plural, o.key.namespace.is_some()),
                None => continue,
            },
            Err(e) => {
                findings.push(finding(
                    o,
                    Level::Warn,
                    format!("cannot check what {sa} may do with it: {e}"),
                ));
                continue;
            }
        };
        let namespace = if namespaced {
            o.key.namespace.clone()
        } else {
            None
        };
        let exists = match live.get(&o.key).await {
            Ok(found) => found.is_some(),
            // Unknown: ask for create as well, which a new object needs.
            Err(_) => false,
        };
        for verb in needed(exists, &o.key.kind, tier) {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(sa.username()),
                    groups: Some(groups(sa)),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: namespace.clone(),
                        verb: Some(verb.as_str().to_owned()),
                        group: Some(group.clone()),
                        resource: Some(resource.clone()),
                        name: Some(o.key.name.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = match reviews.create(&PostParams::default(), &review).await {
                Ok(a) => a,
                Err(e) => {
                    // No right to ask (or no server): one finding for the tier, not one per
                    // object.
                    findings.extend(tier_finding(
                        set,
                        Level::Warn,
                        format!(
                            "cannot check what {sa} may do: the SubjectAccessReview failed: {}; the identity of --kubeconfig needs `create` on subjectaccessreviews (authorization.k8s.io)",
                            describe(&e)
                        ),
                    ));
                    return findings;
                }
            };
            let allowed = answer.status.as_ref().is_some_and(|s| s.allowed);
            if allowed {
                continue;
            }
            let refusal = Refusal {
                name: o.key.name.clone(),
                user: sa.username(),
                verb: verb.as_str().to_owned(),
                resource: resource.clone(),
                group: group.clone(),
                namespace: namespace.clone(),
            };
            findings.push(finding(
                o,
                Level::Block,
                format!(
                    "serviceAccount {sa} may not {} {} ({}); the API server would refuse the tier's write: {}",
                    verb.as_str(),
                    refusal_scope(&refusal),
                    verb.why(),
                    refusal.fix()
                ),
            ));
        }
    }
    findings
}

/// `secrets in namespace dev`, `namespaces at the cluster scope`.
fn refusal_scope(r: &Refusal) -> String {
    let group = if r.group.is_empty() {
        String::new()
    } else {
        format!(".{}", r.group)
    };
    match &r.namespace {
        Some(ns) => format!("{}{group} {:?} in namespace {ns}", r.resource, r.name),
        None => format!("{}{group} {:?} at the cluster scope", r.resource, r.name),
    }
}

/// The rule the daemon's identity needs to impersonate `sa`.
pub fn impersonate_rule(sa: &ServiceAccountRef) -> String {
    format!(
        "{{apiGroups: [\"\"], resources: [serviceaccounts], verbs: [impersonate], resourceNames: [{}]}} in a Role in namespace {} (see manifests/core/rbac.yaml)",
        sa.name, sa.namespace
    )
}

/// Whether the identity of `client` may impersonate `sa`: a SelfSubjectAccessReview, which
/// every authenticated identity may send. `None` when the review itself failed.
pub async fn may_impersonate(client: &Client, sa: &ServiceAccountRef) -> Option<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(sa.namespace.clone()),
                verb: Some("impersonate".to_owned()),
                group: Some(String::new()),
                resource: Some("serviceaccounts".to_owned()),
                name: Some(sa.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(a) => Some(a.status.as_ref().is_some_and(|s| s.allowed)),
        Err(e) => {
            debug!(error = %e, "the SelfSubjectAccessReview failed");
            None
        }
    }
}

/// A warning when the identity of `client` may not impersonate `sa` (the daemon may run as
/// another identity than the one validating, so it does not block).
async fn impersonation_finding(
    client: &Client,
    sa: &ServiceAccountRef,
    set: &DesiredSet,
) -> Option<Finding> {
    match may_impersonate(client, sa).await {
        Some(false) => tier_finding(
            set,
            Level::Warn,
            format!(
                "the identity of --kubeconfig may not impersonate serviceAccount {sa}; the daemon's identity needs the rule {}",
                impersonate_rule(sa)
            ),
        ),
        _ => None,
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} (HTTP {})", s.message, s.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(yaml: &str) -> TierConfig {
        let text = format!(
            "source: {{url: /srv/config}}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev]{yaml}}}\n"
        );
        crate::config::Config::parse(&text, std::path::Path::new("gitopsd.yaml"))
            .expect("config")
            .tiers
            .remove(0)
    }

    #[test]
    fn an_existing_object_needs_patch_a_new_one_create_too_and_prune_delete() {
        let plain = tier("");
        assert_eq!(
            needed(true, "ConfigMap", &plain),
            BTreeSet::from([Verb::Patch])
        );
        assert_eq!(
            needed(false, "ConfigMap", &plain),
            BTreeSet::from([Verb::Create, Verb::Patch])
        );
        let pruning = tier(", prune: true");
        assert_eq!(
            needed(true, "ConfigMap", &pruning),
            BTreeSet::from([Verb::Patch, Verb::Delete])
        );
        // Namespaces are kept by prune unless opted in: no delete needed.
        assert_eq!(
            needed(true, "Namespace", &pruning),
            BTreeSet::from([Verb::Patch])
        );
        let recreating = tier(", apply: {recreateOnImmutable: [Job]}");
        assert_eq!(
            needed(true, "Job", &recreating),
            BTreeSet::from([Verb::Patch, Verb::Delete])
        );
        assert_eq!(
            needed(true, "ConfigMap", &recreating),
            BTreeSet::from([Verb::Patch])
        );
    }

    #[test]
    fn a_service_account_has_its_groups() {
        let sa = ServiceAccountRef {
            namespace: "gitopsd".into(),
            name: "tier-dev".into(),
        };
        assert_eq!(
            groups(&sa),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:gitopsd",
                "system:authenticated"
            ]
        );
    }
}
