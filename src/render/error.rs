//! Everything that stops a tier from rendering. Every message names the file (relative to the
//! repo root), the line where it is known, the object where there is one, and the rule broken,
//! because the operator reading it has only the log line to go on.

use std::path::PathBuf;

use crate::revision::Revision;

/// Why a tier rendered nothing.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "tier name {tier:?} is not a DNS label (lowercase letters, digits and '-'); it names a directory under tiers/"
    )]
    InvalidTierName { tier: String },

    #[error(
        "{message} (revision {revision} was refused before and is not rendered again until the ref moves or the daemon restarts)"
    )]
    Refused { revision: Revision, message: String },

    #[error("cannot check out revision {revision}: {reason}")]
    Checkout { revision: Revision, reason: String },

    #[error("{dir}: no such tier directory in the config repo")]
    TierNotFound { dir: String },

    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{dir}/: more than {limit} manifest files and kustomize directories (rule: max_manifest_files): split the tier, or build the directory with a kustomization"
    )]
    TooManyFiles { dir: String, limit: usize },

    #[error(
        "{dir}/: more than {limit} directories below {top}/ (rule: max_directory_depth): flatten the layout"
    )]
    DirectoryTooDeep {
        dir: String,
        top: String,
        limit: usize,
    },

    #[error(
        "{file}: has a manifest suffix in another case and would not be read (rule: manifests end in .yaml, .yml or .json, lowercase): rename it to end in {suffix}, or rename it to a suffix that is not a manifest's if it is none"
    )]
    ManifestSuffixCase { file: String, suffix: &'static str },

    #[error("{file}: is not a regular file (rule: only regular files and directories are read)")]
    NotARegularFile { file: String },

    #[error(
        "{file}: symlink resolves to {target}, outside the repository (rule: symlinks must stay inside the repo)"
    )]
    SymlinkEscapes { file: String, target: PathBuf },

    #[error(
        "{file}: {size} bytes is over the limit of {limit} bytes per file (rule: max_file_bytes, a guard against abuse: split the file, or raise {setting})"
    )]
    FileTooLarge {
        file: String,
        size: u64,
        limit: u64,
        /// The gitopsd.yaml field that sets `limit`.
        setting: &'static str,
    },

    #[error("{file} line {line}: not valid UTF-8 (rule: manifests are UTF-8 text)")]
    NotUtf8 { file: String, line: usize },

    #[error("{file} line {line}: YAML syntax: {message}")]
    Yaml {
        file: String,
        line: usize,
        message: String,
    },

    #[error(
        "{file} line {line}: document {document} expands to more than {limit} nodes; a YAML alias bomb? (rule: max_document_nodes; if the document is real, split it or raise render.maxDocumentNodes)"
    )]
    DocumentTooLarge {
        file: String,
        line: usize,
        document: usize,
        limit: usize,
    },

    #[error(
        "{file} line {line}: document {document} replays its aliases more than 100 times its own length; a YAML alias bomb? (rule: max_document_nodes, serde_yaml's alias guard: use fewer aliases)"
    )]
    AliasRepetition {
        file: String,
        line: usize,
        document: usize,
    },

    #[error("{file} line {line}: nesting deeper than {limit} levels (rule: max_depth)")]
    TooDeep {
        file: String,
        line: usize,
        limit: usize,
    },

    #[error(
        "{file} line {line}: document {document} takes the tier's parsed objects past {limit} bytes of memory (rule: max_tier_bytes, the bound on one render's memory; about 56 bytes per YAML node, aliases expanded, plus its text): split the tier, or raise render.maxTierBytes"
    )]
    TierTooLarge {
        file: String,
        line: usize,
        document: usize,
        limit: u64,
    },

    #[error(
        "{location}: {object} is {size} bytes as JSON, over the limit of {limit} bytes per object (rule: max_object_bytes; the API server refuses a request body over 3 MiB, and etcd by default an object over 1.5 MiB): make the object smaller, or raise render.maxObjectBytes only if your API server accepts it"
    )]
    ObjectTooLarge {
        /// `base/crds.yaml line 12`, with `items[N]` for an item of a List.
        location: String,
        object: String,
        size: usize,
        limit: u64,
    },

    #[error(
        "{file} line {line}: document {document} is a {kind} whose {why} (rule: a List document holds its objects in `items`, a sequence of objects; nested Lists are not expanded: move their items up)"
    )]
    BadList {
        file: String,
        line: usize,
        document: usize,
        kind: String,
        why: String,
    },

    #[error(
        "{file} line {line}: document {document} is not a Kubernetes object: {why} (rule: every document is a mapping with apiVersion, kind and metadata.name)"
    )]
    NotAnObject {
        file: String,
        line: usize,
        document: usize,
        why: String,
    },

    #[error(
        "{file} line {line}: ${{{name}}} is not defined in {tier_file} vars (rule: every ${{VAR}} must be defined; write $${{{name}}} for a literal ${{{name}}})"
    )]
    UndefinedVar {
        file: String,
        line: usize,
        name: String,
        tier_file: String,
    },

    #[error(
        "{file} line {line}: malformed variable reference {text:?}; expected ${{NAME}} with NAME of letters, digits and '_' (write $${{ for a literal ${{)"
    )]
    MalformedVar {
        file: String,
        line: usize,
        text: String,
    },

    #[error("{file}: {field}: {message}")]
    InvalidOverlay {
        file: String,
        field: String,
        message: String,
    },

    #[error(
        "{file} line {line}: patches[{index}]: no object matches target {target} (rule: a patch must target an existing object)"
    )]
    PatchTargetMissing {
        file: String,
        line: usize,
        index: usize,
        target: String,
    },

    #[error("{file} line {line}: patches[{index}] on {object}: {message}")]
    PatchFailed {
        file: String,
        line: usize,
        index: usize,
        object: String,
        message: String,
    },

    #[error(
        "{file} line {line}: patches[{index}] changes {field} of {object} {change}; a patch may not change the apiVersion, kind, metadata.name or metadata.namespace of its target (rule: scope and security are checked on what the file says the object is): write the other object in its own manifest instead"
    )]
    PatchChangesIdentity {
        file: String,
        line: usize,
        index: usize,
        object: String,
        field: &'static str,
        /// `from "v1" to "rbac.authorization.k8s.io/v1"`
        change: String,
    },

    #[error(
        "{file} line {line}: CustomResourceDefinition {crd} declares {kind} {declared}, but the API server knows it as {served} (rule: a kind's scope cannot change; fix spec.scope or the CRD's group and kind)"
    )]
    CrdScopeConflict {
        file: String,
        line: usize,
        crd: String,
        /// `ClusterRoleBinding in rbac.authorization.k8s.io/v1`
        kind: String,
        declared: &'static str,
        served: &'static str,
    },

    #[error(
        "cannot learn from the API server which kinds are namespaced: {reason}; nothing is rendered (and nothing pruned) until discovery answers"
    )]
    ScopesUnavailable { reason: String },

    #[error(
        "{object} is defined twice in tier {tier}: {first} and {second} (rule: one definition per apiVersion group, kind, namespace and name)"
    )]
    Duplicate {
        tier: String,
        object: String,
        first: String,
        second: String,
    },

    #[error(
        "{file} line {line}: {object} is cluster-scoped and must not set metadata.namespace {namespace:?}"
    )]
    NamespaceOnClusterScoped {
        file: String,
        line: usize,
        object: String,
        namespace: String,
    },

    #[error("tier {tier} renders {count} objects, over the limit of {limit} (rule: max_objects)")]
    TooManyObjects {
        tier: String,
        count: usize,
        limit: usize,
    },

    #[error(
        "{file}: {field} references {reference:?}, which leaves the repository (rule: kustomize paths must stay inside the repo)"
    )]
    PathEscapes {
        file: String,
        field: String,
        reference: String,
    },

    #[error(
        "{file}: {field} references {reference:?}, a remote or absolute location (rule: render reads only the checked-out repo)"
    )]
    RemoteReference {
        file: String,
        field: String,
        reference: String,
    },

    #[error(
        "{file}: needs kustomize, which was not found: set GITOPSD_KUSTOMIZE or put kustomize on PATH (scripts/build-kustomize.sh builds it)"
    )]
    KustomizeMissing { file: String },

    #[error(
        "{file}: kustomize build {dir} was stopped at its {limit} cap of {cap} (render limit {setting}); a kustomization (or a file it pulls in) that needs this much is refused: look for a YAML alias bomb or a runaway generator, or raise {setting}"
    )]
    KustomizeLimit {
        file: String,
        dir: String,
        limit: ChildLimit,
        cap: String,
        setting: &'static str,
    },

    #[error("{file}: kustomize build {dir} failed ({status}): {stderr}")]
    KustomizeFailed {
        file: String,
        dir: String,
        status: String,
        stderr: String,
    },
}

/// Which cap of a child process's box it ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildLimit {
    Memory,
    Cpu,
}

impl std::fmt::Display for ChildLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChildLimit::Memory => "memory",
            ChildLimit::Cpu => "CPU time",
        })
    }
}

impl RenderError {
    pub fn checkout(revision: &Revision, reason: &str) -> RenderError {
        RenderError::Checkout {
            revision: revision.clone(),
            reason: reason.to_owned(),
        }
    }
}
