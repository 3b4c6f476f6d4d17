//! A write the API server refused (403): who was refused what, and the RBAC rule that would
//! allow it. With `serviceAccount` set, a tier writes as that ServiceAccount, so a 403 is the
//! second wall at work; the status must say which permission is missing and where to grant it.

use std::fmt;

/// What RBAC refused, read from the API server's message (`configmaps "x" is forbidden: User
/// "system:serviceaccount:gitopsd:tier-dev" cannot patch resource "configmaps" in API group ""
/// in the namespace "dev"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The object's name as the server quoted it.
    pub name: String,
    pub user: String,
    pub verb: String,
    /// The resource, `deployments/scale` for a subresource.
    pub resource: String,
    pub group: String,
    /// `None`: at the cluster scope.
    pub namespace: Option<String>,
}

/// Reads the standard RBAC refusal; `None` for any other 403 (an admission plugin's, say).
pub fn parse(message: &str) -> Option<Refusal> {
    let (head, rest) = message.split_once(" is forbidden: User \"")?;
    let name = head.split_once(" \"")?.1.strip_suffix('"')?;
    let (user, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(" cannot ")?;
    let (verb, rest) = rest.split_once(" resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(" in API group \"")?;
    let (group, rest) = rest.split_once('"')?;
    let namespace = if let Some(ns) = rest.strip_prefix(" in the namespace \"") {
        Some(ns.split_once('"')?.0.to_owned())
    } else if rest.starts_with(" at the cluster scope") {
        None
    } else {
        return None;
    };
    Some(Refusal {
        name: name.to_owned(),
        user: user.to_owned(),
        verb: verb.to_owned(),
        resource: resource.to_owned(),
        group: group.to_owned(),
        namespace,
    })
}

/// `(namespace, name)` of a ServiceAccount user name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix("system:serviceaccount:")?.split_once(':')
}

impl Refusal {
    /// The RBAC rule that would allow the request, and where it must be bound.
    pub fn fix(&self) -> String {
        let object_name = &self.name;
        let subject = match service_account(&self.user) {
            Some((ns, name)) => format!("ServiceAccount {ns}/{name}"),
            None => format!("user {}", self.user),
        };
        let rule = format!(
            "{{apiGroups: [\"{}\"], resources: [{}], verbs: [{}]",
            self.group, self.resource, self.verb
        );
        match &self.namespace {
            Some(ns) => format!(
                "grant {subject} the rule {rule}}} in a Role bound to it in namespace {ns}, if the tier should write there"
            ),
            // Cluster-scoped: by name, so the grant opens this one object and not its kind.
            None => format!(
                "grant {subject} the rule {rule}, resourceNames: [{object_name}]}} in a ClusterRole bound to it, if the tier should write this object"
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core".to_owned()
        } else {
            self.group.clone()
        };
        write!(
            f,
            "{} may not {} {} (API group {group}) ",
            self.user, self.verb, self.resource
        )?;
        match &self.namespace {
            Some(ns) => write!(f, "in namespace {ns}"),
            None => f.write_str("at the cluster scope"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_refusal_names_the_verb_resource_and_the_role_to_grant() {
        let r = parse(
            "secrets \"db\" is forbidden: User \"system:serviceaccount:gitopsd:tier-dev\" cannot patch resource \"secrets\" in API group \"\" in the namespace \"dev\"",
        )
        .unwrap();
        assert_eq!(
            r,
            Refusal {
                name: "db".into(),
                user: "system:serviceaccount:gitopsd:tier-dev".into(),
                verb: "patch".into(),
                resource: "secrets".into(),
                group: String::new(),
                namespace: Some("dev".into()),
            }
        );
        assert_eq!(
            r.to_string(),
            "system:serviceaccount:gitopsd:tier-dev may not patch secrets (API group core) in namespace dev"
        );
        assert_eq!(
            r.fix(),
            "grant ServiceAccount gitopsd/tier-dev the rule {apiGroups: [\"\"], resources: [secrets], verbs: [patch]} in a Role bound to it in namespace dev, if the tier should write there"
        );
    }

    #[test]
    fn a_cluster_scoped_refusal_grants_by_name() {
        let r = parse(
            "clusterrolebindings.rbac.authorization.k8s.io \"x\" is forbidden: User \"system:serviceaccount:gitopsd:tier-dev\" cannot patch resource \"clusterrolebindings\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
        )
        .unwrap();
        assert_eq!(r.namespace, None);
        assert_eq!(r.group, "rbac.authorization.k8s.io");
        assert!(
            r.fix().contains("resourceNames: [x]} in a ClusterRole"),
            "{}",
            r.fix()
        );
        // A reason after the scope (RBAC's own, or another authorizer's) is not a problem.
        let r = parse(
            "namespaces \"kube-system\" is forbidden: User \"u\" cannot delete resource \"namespaces\" in API group \"\" at the cluster scope: RBAC: nope",
        )
        .unwrap();
        assert_eq!((r.user.as_str(), r.verb.as_str()), ("u", "delete"));
        assert!(r.fix().starts_with("grant user u "));
    }

    #[test]
    fn other_refusals_are_not_read_as_rbac() {
        assert_eq!(
            parse(
                "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": privileged"
            ),
            None
        );
        assert_eq!(parse("configmaps \"x\" is forbidden: "), None);
    }
}
