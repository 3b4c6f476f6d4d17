//! The render stage: a checked-out config repo and a tier name in, the tier's desired set
//! out: ordered, labelled, hashed objects, or an error that names the file and renders
//! nothing. Pure logic on a directory; fetching the repo is the source stage's job.
//!
//! A tier is the manifests under `base/` plus those under `tiers/<tier>/`, subdirectories
//! included (`walk.rs` says which files, in which order), with `tiers/<tier>/tier.yaml`
//! applied on top (see DESIGN.md). A directory holding a kustomization is built by kustomize
//! instead; when the tier directory holds one, its build is the tier's whole input (kustomize
//! overlays pull in their bases themselves), and tier.yaml, if present, is still applied.

mod builtin_kinds;
mod digest;
mod error;
mod files;
mod kustomize;
mod list;
mod overlay;
mod sandbox;
mod scope;
mod vars;
mod walk;
mod yaml;

#[cfg(test)]
mod layout_tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::object::{ObjectKey, ObjectName};

pub use digest::canonical_json;
pub use error::{ChildLimit, RenderError};
pub use kustomize::Kustomize;
pub use vars::SUBSTITUTE_ANNOTATION;

use files::Repo;
use overlay::Overlay;
use scope::SetScopes;
pub use scope::{KindScope, KindScopes, ObjectScope, builtin_kubernetes_version};
use yaml::{TierBytes, YamlLimits};

/// The label every rendered object carries; the live set of a tier is found by it.
pub const TIER_LABEL: &str = "gitopsd.io/tier";

/// Bounds that keep a hostile or broken repo from exhausting the daemon, without refusing
/// what Kubernetes accepts: objects are bounded by their size as JSON (what the API server
/// receives), the tier by the sum of those, alias expansion by nodes per document; the
/// size of a file's text is only a coarse guard against abuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest file read (64 MiB by default): a guard against abuse only. Real
    /// bundles are several MB (prometheus-operator's bundle.yaml is 4.2 MB).
    pub max_file_bytes: u64,
    /// Largest object, as JSON (3 MiB by default: the API server's own limit on a request
    /// body, so nothing it would accept is refused here).
    pub max_object_bytes: u64,
    /// Most memory a tier's parsed objects may take, counted while parsing (about 56 bytes
    /// per YAML node plus its text; 256 MiB by default): the bound on one render's memory.
    pub max_tier_bytes: u64,
    /// Deepest nesting of mappings and sequences in a document (64 by default).
    pub max_depth: usize,
    /// Most objects one tier may render (20,000 by default).
    pub max_objects: usize,
    /// Most YAML nodes one document may expand to, aliases expanded (250,000 by default):
    /// the bound on alias bombs.
    pub max_document_nodes: usize,
    /// Largest `kustomize build` output (64 MiB by default).
    pub max_kustomize_output_bytes: u64,
    /// How long `kustomize build` may run (60 s by default).
    pub kustomize_timeout: Duration,
    /// The address space `kustomize build` may map (RLIMIT_AS; 2 GiB by default). Go
    /// reserves address space well beyond what it uses: kustomize 5.8 needs about 1 GiB of
    /// it to build anything (measured in `render/sandbox.rs`).
    pub kustomize_memory_bytes: u64,
    /// CPU time `kustomize build` may use, all its threads together (RLIMIT_CPU; 30 s by
    /// default).
    pub kustomize_cpu: Duration,
    /// Most manifest files (and kustomize subdirectories) under `base/`, and under a tier's
    /// directory, each (20,000 by default).
    pub max_manifest_files: usize,
    /// Deepest subdirectory read below `base/` or a tier's directory (32 by default).
    pub max_directory_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 64 * 1024 * 1024,
            max_object_bytes: 3 * 1024 * 1024,
            max_tier_bytes: 256 * 1024 * 1024,
            max_depth: 64,
            max_objects: 20_000,
            max_document_nodes: 250_000,
            max_kustomize_output_bytes: 64 * 1024 * 1024,
            kustomize_timeout: Duration::from_secs(60),
            kustomize_memory_bytes: 2 * 1024 * 1024 * 1024,
            kustomize_cpu: Duration::from_secs(30),
            max_manifest_files: 20_000,
            max_directory_depth: 32,
        }
    }
}

/// Where an object was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// Relative to the repo root. For a kustomize directory, its kustomization file.
    pub file: PathBuf,
    /// Index of the document in the file (or in the `kustomize build` output), from 0.
    pub document: usize,
    /// 1-based line where the document's content starts (in the build output for kustomize).
    pub line: usize,
    /// The object's index in the `items` of a List document (`None` for a plain document).
    pub item: Option<usize>,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)?;
        match self.item {
            Some(i) => write!(f, " items[{i}]"),
            None => Ok(()),
        }
    }
}

/// One object of a tier's desired set.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    /// apiVersion, kind, namespace, name; its `Display` is how messages name the object
    /// (`Deployment shop-exp/api`, `Namespace shop-exp`). The namespace is `None` for
    /// cluster-scoped objects (validation blocks any other combination).
    pub key: ObjectKey,
    /// The kind's scope as the render knew it (the caller's [`KindScopes`] plus the set's
    /// CRDs); validation blocks an unknown one, and a namespace that disagrees with it.
    pub scope: ObjectScope,
    /// The object as it will be applied: overlay applied, tier label set.
    pub manifest: Value,
    pub source: SourceLocation,
    /// sha256 hex of the manifest's canonical JSON.
    pub digest: String,
}

impl DesiredObject {
    /// A desired object as a render would make it of `manifest` found at `file` line `line`
    /// (namespaced when it names a namespace), with no digest: for unit tests of the later
    /// stages.
    #[cfg(test)]
    pub(crate) fn for_test(manifest: Value, file: &str, line: usize) -> DesiredObject {
        let get = |p: &str| {
            manifest
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let namespace = get("/metadata/namespace");
        DesiredObject {
            scope: match namespace {
                Some(_) => ObjectScope::Namespaced,
                None => ObjectScope::Cluster,
            },
            key: ObjectKey {
                api_version: get("/apiVersion").unwrap_or_default(),
                kind: get("/kind").unwrap_or_default(),
                namespace,
                name: get("/metadata/name").unwrap_or_default(),
            },
            source: SourceLocation {
                file: file.into(),
                document: 0,
                line,
                item: None,
            },
            digest: String::new(),
            manifest,
        }
    }
}

/// A tier's objects in apply order, with one digest for the whole set.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSet {
    pub tier: String,
    pub objects: Vec<DesiredObject>,
    /// sha256 over the objects' digests in order.
    pub digest: String,
}

impl DesiredSet {
    /// The distinct (apiVersion, kind) pairs of the set, sorted: what the live side watches
    /// and lists for this tier.
    pub fn kinds(&self) -> Vec<(String, String)> {
        let mut kinds: Vec<(String, String)> = self
            .objects
            .iter()
            .map(|o| (o.key.api_version.clone(), o.key.kind.clone()))
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// Renders `tier` from the repo checked out at `repo_root`, finding kustomize (if a directory
/// needs it) through `GITOPSD_KUSTOMIZE` or `PATH`. `scopes` says which kinds are namespaced
/// (the API server's discovery, or [`KindScopes::builtin`] offline): the tier namespace is
/// stamped only on those.
pub fn render_tier(
    repo_root: &Path,
    tier: &str,
    limits: &Limits,
    scopes: &KindScopes,
) -> Result<DesiredSet, RenderError> {
    render_tier_with(repo_root, tier, limits, &Kustomize::from_env(), scopes)
}

/// [`render_tier`] with the kustomize binary given.
pub fn render_tier_with(
    repo_root: &Path,
    tier: &str,
    limits: &Limits,
    kustomize: &Kustomize,
    scopes: &KindScopes,
) -> Result<DesiredSet, RenderError> {
    // The tier name becomes a path: `../x` must never get that far.
    if !overlay::is_dns_label(tier) {
        return Err(RenderError::InvalidTierName {
            tier: tier.to_owned(),
        });
    }
    let repo = Repo::open(repo_root)?;
    let yaml = YamlLimits {
        max_depth: limits.max_depth,
        max_nodes: limits.max_document_nodes,
    };
    let root = repo.root().to_owned();
    let tier_dir = root.join("tiers").join(tier);
    let tier_dir_display = format!("tiers/{tier}/");
    match repo.resolve(&tier_dir)? {
        Some(real) if real.is_dir() => {}
        _ => {
            return Err(RenderError::TierNotFound {
                dir: tier_dir_display,
            });
        }
    }

    let tier_file = tier_dir.join("tier.yaml");
    let tier_file_display = repo.display(&tier_file);
    let (overlay, vars) = match repo.resolve(&tier_file)? {
        Some(_) => {
            let text = repo.read_text(&tier_file, limits.max_file_bytes)?;
            overlay::load(&text, &tier_file_display, &yaml)?
        }
        None => (Overlay::default(), Default::default()),
    };

    // Every substitute path must exist: a typo would silently turn substitution off.
    for (i, p) in overlay.substitute.iter().flatten().enumerate() {
        if repo.resolve(&root.join(p))?.is_none() {
            return Err(RenderError::InvalidOverlay {
                file: tier_file_display.clone(),
                field: format!("substitute[{i}]"),
                message: format!(
                    "{} does not exist in the repo; expected a directory or file whose manifests use vars",
                    crate::escape::escape_line(p)
                ),
            });
        }
    }

    // Every input as (text, file shown in messages and recorded in the source location,
    // whether `${VAR}` is substituted in it).
    let mut inputs: Vec<(String, String, bool)> = Vec::new();
    let build =
        |dir: &Path, kfile: &Path| kustomize::build(&repo, dir, kfile, kustomize, &yaml, limits);
    let substitutes = |path: &Path| overlay.substitutes(repo.relative(path));
    if let Some(kfile) = kustomize::kustomization_in(&repo, &tier_dir)? {
        inputs.push((
            build(&tier_dir, &kfile)?,
            repo.display(&kfile),
            substitutes(&kfile),
        ));
    } else {
        let walk_limits = walk::WalkLimits {
            max_files: limits.max_manifest_files,
            max_depth: limits.max_directory_depth,
        };
        let mut found = Vec::new();
        let base = root.join("base");
        match repo.resolve(&base)? {
            Some(real) if real.is_dir() => {
                if let Some(kfile) = kustomize::kustomization_in(&repo, &base)? {
                    found.push(walk::Input::Kustomize { dir: base, kfile });
                } else {
                    found.extend(walk::walk(&repo, &base, &[], walk_limits)?);
                }
            }
            _ => {}
        }
        found.extend(walk::walk(
            &repo,
            &tier_dir,
            &["tier.yaml", "tier.yml"],
            walk_limits,
        )?);
        for input in found {
            inputs.push(match input {
                walk::Input::File(f) => (
                    repo.read_text(&f, limits.max_file_bytes)?,
                    repo.display(&f),
                    substitutes(&f),
                ),
                walk::Input::Kustomize { dir, kfile } => (
                    build(&dir, &kfile)?,
                    repo.display(&kfile),
                    substitutes(&kfile),
                ),
            });
        }
    }

    let total = TierBytes::new(limits.max_tier_bytes);
    let parsed = parse_inputs(&inputs, &vars, &tier_file_display, &yaml, &total);
    let mut objects: Vec<Pending> = Vec::new();
    for (docs, (_, file, _)) in parsed.into_iter().zip(&inputs) {
        for doc in docs? {
            for (value, item) in list::expand(doc.value, file, doc.line, doc.index)? {
                let source = SourceLocation {
                    file: PathBuf::from(file),
                    document: doc.index,
                    line: doc.line,
                    item,
                };
                identify(&value, &source)?;
                objects.push(Pending {
                    manifest: value,
                    source,
                });
            }
        }
        // Checked per file so a huge repo fails before the rest of the overlay work.
        if objects.len() > limits.max_objects {
            return Err(RenderError::TooManyObjects {
                tier: tier.to_owned(),
                count: objects.len(),
                limit: limits.max_objects,
            });
        }
    }

    // The namespace is stamped before the patches, so a patch can target an object by the
    // namespace it will have; patches may not change identity (see `apply_patches`), so the
    // stamp still fits the final object. The final object's scope is decided again below.
    let before = SetScopes::new(scopes, objects.iter().map(|o| (&o.manifest, &o.source)))?;
    for o in &mut objects {
        let (api_version, kind, namespace, name) = identify(&o.manifest, &o.source)?;
        match (before.get(api_version, kind), namespace, &overlay.namespace) {
            (ObjectScope::Cluster, Some(ns), _) => {
                return Err(RenderError::NamespaceOnClusterScoped {
                    file: o.source.file.display().to_string(),
                    line: o.source.line,
                    object: object_name(kind, None, name),
                    namespace: ns.to_owned(),
                });
            }
            (ObjectScope::Namespaced, None, Some(ns)) => {
                if let Some(meta) = metadata_mut(&mut o.manifest) {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                }
            }
            // An unknown kind gets no namespace: validation blocks it, naming the kind.
            _ => {}
        }
    }

    apply_patches(&mut objects, &overlay, &tier_file_display)?;

    let mut labels: Map<String, Value> = overlay
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    labels.insert(TIER_LABEL.into(), Value::String(tier.to_owned()));
    // What will be applied decides: the CRDs as patched, every kind as it ends up.
    let after = SetScopes::new(scopes, objects.iter().map(|o| (&o.manifest, &o.source)))?;

    let mut out = Vec::with_capacity(objects.len());
    let mut ranks = Vec::with_capacity(objects.len());
    for mut o in objects {
        let not_object = |why: &str| RenderError::NotAnObject {
            file: o.source.file.display().to_string(),
            line: o.source.line,
            document: o.source.document,
            why: why.into(),
        };
        let Some(meta) = metadata_mut(&mut o.manifest) else {
            return Err(not_object("metadata is missing or not a mapping"));
        };
        let entry = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        let Some(obj_labels) = entry.as_object_mut() else {
            return Err(not_object("metadata.labels is not a mapping"));
        };
        for (k, v) in &labels {
            obj_labels.insert(k.clone(), v.clone());
        }
        // A patch may have changed identity fields: read them from the final manifest.
        let (api_version, kind, namespace, name) = identify(&o.manifest, &o.source)?;
        let scope = after.get(api_version, kind);
        ranks.push(scope::rank(api_version, kind, scope));
        let json = canonical_json(&o.manifest);
        // What the API server will be sent, labels and patches included.
        if json.len() as u64 > limits.max_object_bytes {
            return Err(RenderError::ObjectTooLarge {
                location: o.source.to_string(),
                object: object_name(kind, namespace, name),
                size: json.len(),
                limit: limits.max_object_bytes,
            });
        }
        let obj = DesiredObject {
            key: ObjectKey {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
            },
            scope,
            digest: digest::sha256_hex(json.as_bytes()),
            manifest: o.manifest,
            source: o.source,
        };
        out.push(obj);
    }

    check_duplicates(&out, tier)?;

    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| scope::compare(&out[a], &out[b], ranks[a], ranks[b]));
    let mut slots: Vec<Option<DesiredObject>> = out.into_iter().map(Some).collect();
    let objects: Vec<DesiredObject> = order.into_iter().filter_map(|i| slots[i].take()).collect();
    let digest = digest::set_digest(objects.iter().map(|o| o.digest.as_str()));
    Ok(DesiredSet {
        tier: tier.to_owned(),
        objects,
        digest,
    })
}

/// Substitutes (in the inputs that opted in) and parses every input, files spread over the
/// available cores (YAML parsing is most of a render's time); results stay in input order so
/// the first error reported is the same on every run.
fn parse_inputs(
    inputs: &[(String, String, bool)],
    vars: &std::collections::BTreeMap<String, String>,
    tier_file: &str,
    yaml: &YamlLimits,
    total: &TierBytes,
) -> Vec<Result<Vec<yaml::Document>, RenderError>> {
    let parse = |(text, file, substitute): &(String, String, bool)| {
        if !substitute {
            return yaml::parse_counted(text, file, yaml, Some(total));
        }
        let text = vars::substitute_objects(text, vars, file, tier_file, yaml)?;
        yaml::parse_counted(&text, file, yaml, Some(total))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || inputs.len() < 2 {
        return inputs.iter().map(parse).collect();
    }
    let chunk = inputs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                // A panic in a parser thread is a bug of ours; re-raise it where it happened.
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
}

struct Pending {
    manifest: Value,
    source: SourceLocation,
}

fn object_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    ObjectName {
        kind,
        namespace,
        name,
    }
    .to_string()
}

/// apiVersion, kind, metadata.namespace and metadata.name, or an error saying which is wrong.
fn identify<'v>(
    v: &'v Value,
    source: &SourceLocation,
) -> Result<(&'v str, &'v str, Option<&'v str>, &'v str), RenderError> {
    let bad = |why: &str| RenderError::NotAnObject {
        file: source.file.display().to_string(),
        line: source.line,
        document: source.document,
        why: match source.item {
            Some(i) => format!("items[{i}]: {why}"),
            None => why.to_owned(),
        },
    };
    if !v.is_object() {
        return Err(bad("it is not a mapping"));
    }
    let text = |field: &str, value: &'v Value| -> Result<&'v str, RenderError> {
        match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(bad(&format!(
                "{field} is missing or not a non-empty string"
            ))),
        }
    };
    let api_version = text("apiVersion", &v["apiVersion"])?;
    let kind = text("kind", &v["kind"])?;
    if !v["metadata"].is_object() {
        return Err(bad("metadata is missing or not a mapping"));
    }
    let name = text("metadata.name", &v["metadata"]["name"])?;
    let namespace = match &v["metadata"]["namespace"] {
        Value::Null => None,
        ns => Some(text("metadata.namespace", ns)?),
    };
    Ok((api_version, kind, namespace, name))
}

/// `metadata` as a map. [`identify`] has checked that it is one; should it not be, the
/// caller's changes go to a scratch map and the final [`identify`] reports the object.
fn metadata_mut(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()?.get_mut("metadata")?.as_object_mut()
}

fn apply_patches(
    objects: &mut [Pending],
    overlay: &Overlay,
    file: &str,
) -> Result<(), RenderError> {
    for (index, patch) in overlay.patches.iter().enumerate() {
        let mut matched = false;
        for o in objects.iter_mut() {
            let (api_version, kind, namespace, name) = identify(&o.manifest, &o.source)?;
            let t = &patch.target;
            if t.kind != kind || t.name != name {
                continue;
            }
            if t.namespace.is_some() && t.namespace.as_deref() != namespace {
                continue;
            }
            matched = true;
            let object = object_name(kind, namespace, name);
            let identity: [(&'static str, Option<String>); 4] = [
                ("apiVersion", Some(api_version.to_owned())),
                ("kind", Some(kind.to_owned())),
                ("metadata.name", Some(name.to_owned())),
                ("metadata.namespace", namespace.map(str::to_owned)),
            ];
            let failed = |message: String| RenderError::PatchFailed {
                file: file.to_owned(),
                line: patch.line,
                index,
                object: object.clone(),
                message,
            };
            if let Some(merge) = &patch.merge {
                json_patch::merge(&mut o.manifest, merge);
            }
            if let Some(ops) = &patch.json {
                json_patch::patch(&mut o.manifest, ops)
                    .map_err(|e| failed(format!("{e} (rule: RFC 6902 JSON patch)")))?;
            }
            // Scope and security are judged on what the object is: a patch that turned a
            // ConfigMap into a ClusterRoleBinding would slip past them.
            for (field, was) in identity {
                let now = identity_field(&o.manifest, field);
                if now != was {
                    let show =
                        |v: Option<&str>| v.map_or("(none)".to_owned(), |v| format!("{v:?}"));
                    return Err(RenderError::PatchChangesIdentity {
                        file: file.to_owned(),
                        line: patch.line,
                        index,
                        object,
                        field,
                        change: format!(
                            "from {} to {}",
                            show(was.as_deref()),
                            show(now.as_deref())
                        ),
                    });
                }
            }
            // A patch must leave a well-formed object behind.
            identify(&o.manifest, &o.source)
                .map_err(|e| failed(format!("the patched object is no longer valid: {e}")))?;
        }
        if !matched {
            return Err(RenderError::PatchTargetMissing {
                file: file.to_owned(),
                line: patch.line,
                index,
                target: patch.target.to_string(),
            });
        }
    }
    Ok(())
}

/// One identity field of a manifest as text (`None` when absent); any other type is shown as
/// its JSON so a change to it is still seen.
fn identity_field(manifest: &Value, field: &str) -> Option<String> {
    let v = match field {
        "metadata.name" => manifest.pointer("/metadata/name"),
        "metadata.namespace" => manifest.pointer("/metadata/namespace"),
        f => manifest.get(f),
    };
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn check_duplicates(objects: &[DesiredObject], tier: &str) -> Result<(), RenderError> {
    let mut seen: HashMap<(&str, &str, Option<&str>, &str), &DesiredObject> =
        HashMap::with_capacity(objects.len());
    for o in objects {
        let key = (
            scope::group(&o.key.api_version),
            o.key.kind.as_str(),
            o.key.namespace.as_deref(),
            o.key.name.as_str(),
        );
        if let Some(first) = seen.insert(key, o) {
            return Err(RenderError::Duplicate {
                tier: tier.to_owned(),
                object: o.key.to_string(),
                first: first.source.to_string(),
                second: o.source.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
