//! `gitopsd render`: a tier's desired set, printed as YAML or a JSON List.

use super::*;
use crate::revision::Revision;

pub(super) async fn render(args: RenderArgs, report: Report) -> ExitCode {
    let config = match args.config.as_deref().map(Config::load).transpose() {
        Ok(c) => c,
        Err(e) => {
            report.error("invalid config", &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let source = match &config {
        Some(c) => c.source.clone(),
        None => match bare_source(args.repo.repo.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                report.error("no repo", &e);
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let tier_ref = config
        .as_ref()
        .and_then(|c| c.tier(&args.tier))
        .map(|t| t.git_ref.as_str());
    let git_ref = args.repo.effective_ref(tier_ref);
    let limits = config
        .as_ref()
        .map(|c| c.render.limits())
        .unwrap_or_default();
    let (scopes, note, _) = match kind_scopes(args.kubeconfig.as_deref(), args.offline).await {
        Ok(v) => v,
        Err(e) => {
            report.error("cannot learn which kinds are namespaced", &e);
            return ExitCode::FAILURE;
        }
    };
    let rendered = render_at(
        source,
        args.repo.repo.clone(),
        git_ref,
        args.tier.clone(),
        limits,
        scopes,
    )
    .await;
    let (set, revision) = match rendered {
        Ok(v) => v,
        Err(e) => {
            report.error("render failed", &e);
            return ExitCode::FAILURE;
        }
    };
    // The note matters only when a kind's scope was not known (it then got no namespace).
    let unknown: BTreeSet<String> = set
        .objects
        .iter()
        .filter(|o| matches!(o.scope, ObjectScope::Unknown { .. }))
        .map(|o| format!("{} {}", o.key.api_version, o.key.kind))
        .collect();
    if !unknown.is_empty() {
        if let Some(note) = note {
            eprintln!("{note}");
        }
        eprintln!(
            "warning: kinds of unknown scope, left without a namespace (validation blocks them): {}",
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    match print_set(&set, revision.as_ref(), args.output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report.error("cannot print the desired set", &e);
            ExitCode::FAILURE
        }
    }
}

pub(super) fn print_set(
    set: &DesiredSet,
    revision: Option<&Revision>,
    format: OutputFormat,
) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let revision = revision.map_or("files on disk", Revision::as_str);
    let text = match format {
        OutputFormat::Json => {
            let items: Vec<&serde_json::Value> = set.objects.iter().map(|o| &o.manifest).collect();
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"annotations": {
                    "gitopsd.io/tier": set.tier,
                    "gitopsd.io/revision": revision,
                    "gitopsd.io/digest": format!("sha256:{}", set.digest),
                }},
                "items": items,
            });
            serde_json::to_string_pretty(&list)? + "\n"
        }
        OutputFormat::Yaml => {
            let mut text = format!(
                "# tier {}: {} objects at {revision}, digest sha256:{}\n",
                set.tier,
                set.objects.len(),
                set.digest
            );
            for o in &set.objects {
                // A comment line: a newline in a name would end it and start YAML.
                let about = format!("{} ({})", o.key, o.source);
                text += &format!("---\n# {}\n", escape_line(&about));
                text += &serde_yaml::to_string(&o.manifest)?;
            }
            text
        }
    };
    Ok(out.write_all(text.as_bytes())?)
}
