//! The foreign security fields: security-weakening fields that are drift whoever set them
//! ([`SECURITY_FIELDS`]), apart from the severity rule table in [`super`].

/// Where a [`SecurityField`] sits in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityScope {
    /// In each container, init container and ephemeral container the manifest also has
    /// (a container the manifest does not have is reported whole, by `containers[]`).
    Container,
    /// In the pod spec, wherever the kind keeps it ([`crate::podspec`]).
    PodSpec,
    /// At the top level of objects of these kinds.
    Kinds(&'static [&'static str]),
}

/// Which live values of a [`SecurityField`] weaken security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakens {
    /// Any value but an empty one (absent, null, `{}`, `[]`).
    AnyValue,
    /// This value (JSON text: `true`, `0`, `"Unconfined"`).
    Is(&'static str),
    /// A list item the manifest does not have (by merge key, or by value in an atomic list).
    ItemAdded,
    /// A list item the manifest does not have, holding this key (a `hostPath` volume).
    ItemAddedWith(&'static str),
    /// The map at the path holds this key (a label with dots in it) with this value (JSON
    /// text), and the manifest does not set that key.
    KeyIs(&'static str, &'static str),
    /// Any value but this one (JSON text), which is what the server defaults the field to.
    IsNot(&'static str),
    /// A service account other than the one the manifest means: its `serviceAccountName`, or
    /// `default` when it sets none (the server fills both fields in from either).
    OtherServiceAccount,
    /// A `hostPort`, unless it is the one the server defaults under `hostNetwork: true`
    /// (equal to the `containerPort`).
    HostPort,
}

/// A security-sensitive field that is drift whoever set it, whether or not the manifest sets
/// it: server-side apply rightly ignores fields a manifest leaves out, but not these. A field
/// the manifest does set is ordinary drift already and is not reported twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityField {
    pub id: &'static str,
    pub scope: SecurityScope,
    /// Dotted fields below the scope; `[]` after a list's name stands for each item.
    pub path: &'static str,
    pub weakens: Weakens,
    /// Why it counts, for people reading the table.
    pub why: &'static str,
}

const fn sf(
    id: &'static str,
    scope: SecurityScope,
    path: &'static str,
    weakens: Weakens,
    why: &'static str,
) -> SecurityField {
    SecurityField {
        id,
        scope,
        path,
        weakens,
        why,
    }
}

/// The fields (DESIGN.md, "Severity, by default": foreign security fields). None of them is defaulted by the API
/// server (checked against the live fixtures in `src/diff/testdata`), except
/// `serviceAccount(Name)` and `hostPort`, whose conditions allow the defaults.
pub const SECURITY_FIELDS: &[SecurityField] = {
    use SecurityScope::{Container, Kinds, PodSpec};
    use Weakens::{
        AnyValue, HostPort, Is, IsNot, ItemAdded, ItemAddedWith, KeyIs, OtherServiceAccount,
    };
    &[
        // --- containers, init and ephemeral containers ---
        sf(
            "privileged",
            Container,
            "securityContext.privileged",
            Is("true"),
            "a privileged container is root on the node",
        ),
        sf(
            "allow-privilege-escalation",
            Container,
            "securityContext.allowPrivilegeEscalation",
            Is("true"),
            "setuid binaries may gain more privileges than the process started with",
        ),
        sf(
            "capabilities-add",
            Container,
            "securityContext.capabilities.add",
            AnyValue,
            "an added capability (SYS_ADMIN, NET_ADMIN, ...) widens what the process may do to the kernel",
        ),
        sf(
            "run-as-root",
            Container,
            "securityContext.runAsUser",
            Is("0"),
            "user 0 is root in the container, and on the node after any escape",
        ),
        sf(
            "run-as-root-group",
            Container,
            "securityContext.runAsGroup",
            Is("0"),
            "group 0 reads and writes what root's group may",
        ),
        sf(
            "run-as-non-root-off",
            Container,
            "securityContext.runAsNonRoot",
            Is("false"),
            "turns off the kubelet's check that the image does not run as root",
        ),
        sf(
            "proc-mount-unmasked",
            Container,
            "securityContext.procMount",
            Is("\"Unmasked\""),
            "an unmasked /proc exposes the node's kernel interfaces",
        ),
        sf(
            "selinux-options",
            Container,
            "securityContext.seLinuxOptions",
            AnyValue,
            "a chosen SELinux label (e.g. spc_t) can lift the container's confinement",
        ),
        sf(
            "seccomp-unconfined",
            Container,
            "securityContext.seccompProfile.type",
            Is("\"Unconfined\""),
            "no seccomp filter: every system call is open",
        ),
        sf(
            "apparmor-unconfined",
            Container,
            "securityContext.appArmorProfile.type",
            Is("\"Unconfined\""),
            "no AppArmor profile",
        ),
        sf(
            "windows-host-process",
            Container,
            "securityContext.windowsOptions.hostProcess",
            Is("true"),
            "a Windows host process container runs on the node itself",
        ),
        sf(
            "host-port",
            Container,
            "ports[].hostPort",
            HostPort,
            "a host port listens on the node's network, outside network policies",
        ),
        sf(
            "env-from-secret",
            Container,
            "envFrom[]",
            ItemAddedWith("secretRef"),
            "hands a whole Secret to the process, to be read out by whoever changed its command or image",
        ),
        sf(
            "command-added",
            Container,
            "command",
            AnyValue,
            "a command where the manifest runs the image's own entrypoint is a different program",
        ),
        sf(
            "args-added",
            Container,
            "args",
            AnyValue,
            "arguments where the manifest sets none change what the program does",
        ),
        sf(
            "lifecycle-hook",
            Container,
            "lifecycle",
            AnyValue,
            "a postStart or preStop hook runs a command of its own in the container",
        ),
        sf(
            "probe-exec",
            Container,
            "livenessProbe.exec",
            AnyValue,
            "an exec probe runs a command in the container, again and again",
        ),
        sf(
            "probe-exec",
            Container,
            "readinessProbe.exec",
            AnyValue,
            "an exec probe runs a command in the container, again and again",
        ),
        sf(
            "probe-exec",
            Container,
            "startupProbe.exec",
            AnyValue,
            "an exec probe runs a command in the container, again and again",
        ),
        // --- the pod spec ---
        sf(
            "host-network",
            PodSpec,
            "hostNetwork",
            Is("true"),
            "the node's network namespace: its interfaces, and loopback services",
        ),
        sf(
            "host-pid",
            PodSpec,
            "hostPID",
            Is("true"),
            "the node's process namespace: every process on the node is visible and signalable",
        ),
        sf(
            "host-ipc",
            PodSpec,
            "hostIPC",
            Is("true"),
            "the node's IPC namespace",
        ),
        sf(
            "share-process-namespace",
            PodSpec,
            "shareProcessNamespace",
            Is("true"),
            "one container can read another's memory and files through /proc",
        ),
        sf(
            "pod-run-as-root",
            PodSpec,
            "securityContext.runAsUser",
            Is("0"),
            "root for every container that does not say otherwise",
        ),
        sf(
            "pod-run-as-root-group",
            PodSpec,
            "securityContext.runAsGroup",
            Is("0"),
            "group 0 for every container that does not say otherwise",
        ),
        sf(
            "pod-run-as-non-root-off",
            PodSpec,
            "securityContext.runAsNonRoot",
            Is("false"),
            "turns off the non-root check for every container",
        ),
        sf(
            "pod-selinux-options",
            PodSpec,
            "securityContext.seLinuxOptions",
            AnyValue,
            "a chosen SELinux label for every container",
        ),
        sf(
            "pod-seccomp-unconfined",
            PodSpec,
            "securityContext.seccompProfile.type",
            Is("\"Unconfined\""),
            "no seccomp filter for every container",
        ),
        sf(
            "pod-apparmor-unconfined",
            PodSpec,
            "securityContext.appArmorProfile.type",
            Is("\"Unconfined\""),
            "no AppArmor profile for every container",
        ),
        sf(
            "pod-windows-host-process",
            PodSpec,
            "securityContext.windowsOptions.hostProcess",
            Is("true"),
            "every container runs as a process on the node",
        ),
        sf(
            "sysctls",
            PodSpec,
            "securityContext.sysctls",
            AnyValue,
            "kernel parameters; unsafe ones reach beyond the pod",
        ),
        sf(
            "service-account-name",
            PodSpec,
            "serviceAccountName",
            OtherServiceAccount,
            "the service account decides what the pod may do through the API",
        ),
        sf(
            "service-account",
            PodSpec,
            "serviceAccount",
            OtherServiceAccount,
            "the deprecated spelling of serviceAccountName, honoured by the server all the same",
        ),
        sf(
            "hostpath-volume",
            PodSpec,
            "volumes[]",
            ItemAddedWith("hostPath"),
            "a hostPath volume reads or writes the node's filesystem",
        ),
        sf(
            "hostpath-volume-swapped",
            PodSpec,
            "volumes[].hostPath",
            AnyValue,
            "a volume of the manifest turned into a hostPath (a patch with `$retainKeys`)",
        ),
        sf(
            "secret-volume",
            PodSpec,
            "volumes[]",
            ItemAddedWith("secret"),
            "mounts a Secret of the namespace the manifest does not give the pod",
        ),
        sf(
            "automount-token",
            PodSpec,
            "automountServiceAccountToken",
            Is("true"),
            "overrides a service account's `automountServiceAccountToken: false`: API credentials in every container",
        ),
        sf(
            "container-added",
            PodSpec,
            "containers[]",
            ItemAdded,
            "an added container runs its own image with the pod's service account and volumes",
        ),
        sf(
            "init-container-added",
            PodSpec,
            "initContainers[]",
            ItemAdded,
            "an added init container runs its own image before the others",
        ),
        sf(
            "ephemeral-container-added",
            PodSpec,
            "ephemeralContainers[]",
            ItemAdded,
            "an ephemeral (debug) container runs its own image inside the pod",
        ),
        // --- RBAC ---
        sf(
            "rbac-rule-added",
            Kinds(&["Role", "ClusterRole"]),
            "rules[]",
            ItemAdded,
            "an added rule grants a permission",
        ),
        sf(
            "rbac-aggregation",
            Kinds(&["ClusterRole"]),
            "aggregationRule",
            AnyValue,
            "aggregation makes the controller copy the rules of every matching ClusterRole in",
        ),
        sf(
            "rbac-subject-added",
            Kinds(&["RoleBinding", "ClusterRoleBinding"]),
            "subjects[]",
            ItemAdded,
            "an added subject holds the role",
        ),
        // --- admission webhooks ---
        sf(
            "webhook-added",
            Kinds(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            "webhooks[]",
            ItemAdded,
            "an added webhook sees (and, mutating, rewrites) every matching request",
        ),
        sf(
            "webhook-namespace-selector",
            Kinds(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            "webhooks[].namespaceSelector",
            AnyValue,
            "a selector the manifest does not set exempts namespaces from the webhook",
        ),
        sf(
            "webhook-object-selector",
            Kinds(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            "webhooks[].objectSelector",
            AnyValue,
            "a selector the manifest does not set exempts objects from the webhook",
        ),
        sf(
            "webhook-match-conditions",
            Kinds(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            "webhooks[].matchConditions",
            AnyValue,
            "match conditions the manifest does not set skip the webhook for chosen requests",
        ),
        sf(
            "webhook-fail-open",
            Kinds(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            "webhooks[].failurePolicy",
            Is("\"Ignore\""),
            "a failing webhook then lets every request through",
        ),
        // --- network exposure ---
        sf(
            "service-external-ips",
            Kinds(&["Service"]),
            "spec.externalIPs",
            AnyValue,
            "external IPs let a service capture traffic meant for those addresses (CVE-2020-8554)",
        ),
        sf(
            "service-exposed",
            Kinds(&["Service"]),
            "spec.type",
            IsNot("\"ClusterIP\""),
            "a NodePort or LoadBalancer service is reachable from outside the cluster",
        ),
        sf(
            "network-policy-rule-added",
            Kinds(&["NetworkPolicy"]),
            "spec.ingress[]",
            ItemAdded,
            "an added ingress rule lets traffic in that the policy denied",
        ),
        sf(
            "network-policy-rule-added",
            Kinds(&["NetworkPolicy"]),
            "spec.egress[]",
            ItemAdded,
            "an added egress rule lets traffic out that the policy denied",
        ),
        // --- admission policies ---
        sf(
            "admission-policy-exclusion",
            Kinds(&["ValidatingAdmissionPolicy", "MutatingAdmissionPolicy"]),
            "spec.matchConstraints.excludeResourceRules",
            AnyValue,
            "excluded resources escape the policy",
        ),
        sf(
            "admission-policy-exclusion",
            Kinds(&[
                "ValidatingAdmissionPolicyBinding",
                "MutatingAdmissionPolicyBinding",
            ]),
            "spec.matchResources.excludeResourceRules",
            AnyValue,
            "excluded resources escape the policy",
        ),
        sf(
            "admission-policy-fail-open",
            Kinds(&["ValidatingAdmissionPolicy", "MutatingAdmissionPolicy"]),
            "spec.failurePolicy",
            Is("\"Ignore\""),
            "a policy that fails to evaluate then lets the request through",
        ),
        // --- Pod Security admission ---
        sf(
            "pod-security-privileged",
            Kinds(&["Namespace"]),
            "metadata.labels",
            KeyIs("pod-security.kubernetes.io/enforce", "\"privileged\""),
            "lifts Pod Security admission for every pod of the namespace",
        ),
    ]
};
