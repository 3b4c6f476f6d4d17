//! Directories with a kustomization are rendered by the `kustomize` binary, so existing repos
//! work unchanged. Before it runs, every path the kustomization (and the kustomizations it
//! pulls in) references is checked: no remote or absolute locations (render reads only the
//! checked-out revision; fetching is the source stage's job), nothing that leaves the repo
//! by `..` or by a symlink. kustomize runs with an empty environment (no plugin home, no
//! exec or helm flags), no stdin, a deadline and a cap on its output.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::RenderError;
use super::error::ChildLimit;
use super::files::Repo;
use super::sandbox::{self, Caps, confine};
use super::yaml::{YamlLimits, parse_documents};
use crate::escape::escape_text;

/// The names kustomize itself accepts for a kustomization file.
pub(crate) const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Where the kustomize binary is, if anywhere.
#[derive(Debug, Clone)]
pub struct Kustomize {
    path: Option<PathBuf>,
}

impl Kustomize {
    /// `$GITOPSD_KUSTOMIZE`, else `kustomize` on `PATH`, else none (an error only when a
    /// repo needs it).
    pub fn from_env() -> Kustomize {
        if let Some(p) = std::env::var_os("GITOPSD_KUSTOMIZE").filter(|p| !p.is_empty()) {
            return Kustomize {
                path: Some(p.into()),
            };
        }
        let path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kustomize"))
                .find(|p| p.is_file())
        });
        Kustomize { path }
    }

    /// The binary at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Kustomize {
        Kustomize {
            path: Some(path.into()),
        }
    }

    /// No kustomize: a repo that needs it fails to render.
    pub fn none() -> Kustomize {
        Kustomize { path: None }
    }
}

/// The kustomization file in `dir`, if there is one.
pub(crate) fn kustomization_in(repo: &Repo, dir: &Path) -> Result<Option<PathBuf>, RenderError> {
    for name in KUSTOMIZATION_FILES {
        let p = dir.join(name);
        if repo.resolve(&p)?.is_some() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Checks the kustomization in `dir`, runs `kustomize build`, returns its output.
pub(crate) fn build(
    repo: &Repo,
    dir: &Path,
    kustomization: &Path,
    kustomize: &Kustomize,
    yaml: &YamlLimits,
    limits: &super::Limits,
) -> Result<String, RenderError> {
    let (max_file_bytes, max_output_bytes, timeout) = (
        limits.max_file_bytes,
        limits.max_kustomize_output_bytes,
        limits.kustomize_timeout,
    );
    let file = repo.display(kustomization);
    let mut seen = HashSet::new();
    check_tree(repo, dir, yaml, max_file_bytes, &mut seen)?;
    let Some(bin) = &kustomize.path else {
        return Err(RenderError::KustomizeMissing { file });
    };
    let rel_dir = repo.display(dir);
    let failed = |status: String, stderr: String| RenderError::KustomizeFailed {
        file: file.clone(),
        dir: rel_dir.clone(),
        status,
        stderr,
    };
    let mut cmd = Command::new(bin);
    cmd.arg("build")
        .arg(repo.relative(dir))
        .current_dir(repo.root())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let caps = Caps {
        memory_bytes: limits.kustomize_memory_bytes,
        cpu: limits.kustomize_cpu,
    };
    confine(&mut cmd, caps);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RenderError::KustomizeMissing { file: file.clone() },
        _ => failed("could not start".into(), format!("{}: {e}", bin.display())),
    })?;
    // Both pipes are drained on their own threads so a chatty kustomize cannot block on a
    // full pipe while we wait for it.
    let stdout = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = out.take(max_output_bytes + 1).read_to_end(&mut buf);
            r.map(|_| buf)
        })
    });
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.take(64 * 1024).read_to_end(&mut buf);
            buf
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(
                    format!("killed after {timeout:?}"),
                    "no result within the deadline (rule: kustomize_timeout)".into(),
                ));
            }
            Err(e) => return Err(failed("wait failed".into(), e.to_string())),
        }
    };
    let out = stdout
        .and_then(|h| h.join().ok())
        .transpose()
        .map_err(|e| failed("reading output".into(), e.to_string()))?
        .unwrap_or_default();
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    // Checked before the exit status: once we stop reading at the cap, kustomize dies of a
    // broken pipe, and the size is the real reason.
    if out.len() as u64 > max_output_bytes {
        return Err(RenderError::FileTooLarge {
            file: format!("{file} (kustomize build output)"),
            size: out.len() as u64,
            limit: max_output_bytes,
            setting: "render.kustomize.maxOutputBytes",
        });
    }
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err).trim().to_owned();
        if let Some(limit) = sandbox::limit_hit(status, &stderr) {
            let (cap, setting) = match limit {
                ChildLimit::Memory => (
                    sandbox::bytes_human(caps.memory_bytes),
                    "kustomize_memory_bytes",
                ),
                ChildLimit::Cpu => (format!("{:?}", caps.cpu), "kustomize_cpu"),
            };
            return Err(RenderError::KustomizeLimit {
                file: file.clone(),
                dir: rel_dir.clone(),
                limit,
                cap,
                setting,
            });
        }
        // kustomize's messages quote file names and content from the repo.
        return Err(failed(
            status.to_string(),
            escape_text(&stderr).into_owned(),
        ));
    }
    super::files::utf8(out, format!("{file} (kustomize build output)"))
}

/// Walks the kustomization in `dir` and every kustomization it references.
fn check_tree(
    repo: &Repo,
    dir: &Path,
    yaml: &YamlLimits,
    max_file_bytes: u64,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), RenderError> {
    let Some(real_dir) = repo.resolve(dir)? else {
        return Ok(());
    };
    if !seen.insert(real_dir) {
        return Ok(());
    }
    let Some(kfile) = kustomization_in(repo, dir)? else {
        return Ok(());
    };
    let file = repo.display(&kfile);
    let text = repo.read_text(&kfile, max_file_bytes)?;
    let docs = parse_documents(&text, &file, yaml)?;
    let Some(k) = docs.first().map(|d| &d.value) else {
        return Ok(());
    };
    if k.get("helmCharts").is_some() {
        return Err(RenderError::RemoteReference {
            file,
            field: "helmCharts".into(),
            reference: "(Helm charts are fetched from the network)".into(),
        });
    }
    for (field, reference) in references(k) {
        let target = check_reference(repo, dir, &file, &field, &reference)?;
        match target {
            Some(target) if target.is_dir() => {
                check_tree(repo, &target, yaml, max_file_bytes, seen)?;
            }
            // Generator inputs are read as text or env files, not as YAML.
            Some(target)
                if !field.starts_with("configMapGenerator")
                    && !field.starts_with("secretGenerator") =>
            {
                match repo.read_text(&target, max_file_bytes) {
                    Ok(text) => check_yaml(&text, &repo.display(&target), yaml)?,
                    // A big file (a large CRD, say) is no bomb; kustomize reads it as before,
                    // inside its caps.
                    Err(RenderError::FileTooLarge { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
    }
    // Inline patches and generator/transformer configs are YAML kustomize parses too.
    for (field, text) in inline_yaml(k) {
        check_yaml(&text, &format!("{file} ({field})"), yaml)?;
    }
    Ok(())
}

/// Runs a file kustomize will parse through gitopsd's own bounded parser first: an alias
/// bomb or a nesting that kustomize would expand without bound is refused at once, naming
/// the file, before kustomize starts. Other YAML errors are left to kustomize, which reports
/// them in its own words (its YAML dialect differs in small ways from ours).
fn check_yaml(text: &str, file: &str, yaml: &YamlLimits) -> Result<(), RenderError> {
    match parse_documents(text, file, yaml) {
        Ok(_) => Ok(()),
        Err(
            e @ (RenderError::DocumentTooLarge { .. }
            | RenderError::AliasRepetition { .. }
            | RenderError::TooDeep { .. }),
        ) => Err(e),
        Err(_) => Ok(()),
    }
}

/// (field, text) of every inline YAML string of a kustomization: `patches[].patch`, and
/// multi-line entries of the generator, transformer and validator lists.
fn inline_yaml(k: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in ["patches", "patchesJson6902", "patchesStrategicMerge"] {
        if let Some(items) = k[field].as_array() {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = item["patch"].as_str() {
                    out.push((format!("{field}[{i}].patch"), p.to_owned()));
                } else if let Some(p) = item.as_str().filter(|s| s.contains('\n')) {
                    out.push((format!("{field}[{i}]"), p.to_owned()));
                }
            }
        }
    }
    for field in ["generators", "transformers", "validators"] {
        if let Some(items) = k[field].as_array() {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = item.as_str().filter(|s| s.contains('\n')) {
                    out.push((format!("{field}[{i}]"), p.to_owned()));
                }
            }
        }
    }
    out
}

/// (field, path) for every path-like field of a kustomization.
fn references(k: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut strings = |field: &str, v: &Value| {
        if let Some(items) = v.as_array() {
            for (i, item) in items.iter().enumerate() {
                // Inline YAML (generators, transformers) is not a path.
                if let Some(s) = item.as_str().filter(|s| !s.contains('\n')) {
                    out.push((format!("{field}[{i}]"), s.to_owned()));
                }
            }
        }
    };
    for field in [
        "resources",
        "bases",
        "components",
        "crds",
        "patchesStrategicMerge",
        "generators",
        "transformers",
        "validators",
        "configurations",
    ] {
        strings(field, &k[field]);
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        if let Some(items) = k[field].as_array() {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = item["path"].as_str() {
                    out.push((format!("{field}[{i}].path"), p.to_owned()));
                }
            }
        }
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        if let Some(items) = k[field].as_array() {
            for (i, item) in items.iter().enumerate() {
                for sub in ["files", "envs"] {
                    if let Some(files) = item[sub].as_array() {
                        for (j, f) in files.iter().enumerate() {
                            if let Some(f) = f.as_str() {
                                // `key=path` names the key; the path is after `=`.
                                let path = f.split_once('=').map_or(f, |(_, p)| p);
                                out.push((format!("{field}[{i}].{sub}[{j}]"), path.to_owned()));
                            }
                        }
                    }
                }
                if let Some(env) = item["env"].as_str() {
                    out.push((format!("{field}[{i}].env"), env.to_owned()));
                }
            }
        }
    }
    if let Some(p) = k["openapi"]["path"].as_str() {
        out.push(("openapi.path".into(), p.to_owned()));
    }
    out
}

/// Refuses remote, absolute and escaping references; returns the resolved target if it exists.
fn check_reference(
    repo: &Repo,
    dir: &Path,
    file: &str,
    field: &str,
    reference: &str,
) -> Result<Option<PathBuf>, RenderError> {
    let remote = || RenderError::RemoteReference {
        file: file.to_owned(),
        field: field.to_owned(),
        reference: reference.to_owned(),
    };
    if reference.contains("://") || reference.starts_with("git@") || reference.contains("?ref=") {
        return Err(remote());
    }
    let path = Path::new(reference);
    if path.is_absolute() {
        return Err(remote());
    }
    // `..` is checked lexically first: the target may not exist, and kustomize would still
    // try it.
    let joined = dir.join(path);
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    if !normal.starts_with(repo.root()) {
        return Err(RenderError::PathEscapes {
            file: file.to_owned(),
            field: field.to_owned(),
            reference: reference.to_owned(),
        });
    }
    match repo.resolve(&normal)? {
        Some(real) => Ok(Some(real)),
        None => {
            // kustomize reads `github.com/org/repo/path` as a remote base.
            let (first, rest) = reference.split_once('/').unwrap_or((reference, ""));
            if first.contains('.') && first != "." && first != ".." && !rest.is_empty() {
                return Err(remote());
            }
            Ok(None)
        }
    }
}
