//! `gitopsd validate`: a tier's findings (schema, security, scope, and with a cluster,
//! ownership and access).

use super::*;

pub(super) async fn validate(args: ValidateArgs, report: Report) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report.error("invalid config", &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let tiers: Vec<_> = match &args.tier {
        Some(name) => match config.tier(name) {
            Some(t) => vec![t.clone()],
            None => {
                let known: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
                report.error(
                    "unknown tier",
                    &format!(
                        "{}: no tier {name:?} (tiers: {})",
                        args.config.display(),
                        known.join(", ")
                    ),
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => config.tiers.clone(),
    };
    let last_tier = config.tiers.last().map(|t| t.name.clone());
    let (scopes, client) = match kind_scopes(args.kubeconfig.as_deref(), args.offline).await {
        Ok((scopes, note, client)) => {
            if let Some(note) = note {
                eprintln!("{}", escape_text(&note));
            }
            (scopes, client)
        }
        Err(e) => {
            report.error("cannot connect to Kubernetes", &e);
            return ExitCode::FAILURE;
        }
    };
    let mut blocked = false;
    for tier in tiers {
        let git_ref = args.repo.effective_ref(Some(&tier.git_ref));
        let rendered = render_at(
            config.source.clone(),
            args.repo.repo.clone(),
            git_ref,
            tier.name.clone(),
            config.render.limits(),
            scopes.clone(),
        )
        .await;
        let set = match rendered {
            Ok((set, _)) => set,
            Err(e) => {
                println!("tier {}: error: {}", tier.name, escape_text(&e.to_string()));
                blocked = true;
                continue;
            }
        };
        let mut findings = crate::validate::validate(
            &set,
            &tier,
            last_tier.as_deref() == Some(tier.name.as_str()),
        );
        if let Some(client) = &client {
            let inventory = tier_inventory(client, &config.state, &tier).await;
            match ownership_findings(client, &tier, &set, &inventory).await {
                Ok(f) => findings.extend(f),
                Err(e) => {
                    println!(
                        "tier {}: error: cannot check who holds its objects: {}",
                        tier.name,
                        escape_text(&e.to_string())
                    );
                    blocked = true;
                }
            }
            // The second wall: what the tier's ServiceAccount may write, asked of RBAC.
            if let Some(sa) = &tier.service_account {
                findings.extend(crate::access::check(client, &tier, sa, &set).await);
            }
        }
        let blocking = findings.iter().filter(|f| f.level == Level::Block).count();
        for f in &findings {
            println!("tier {}: {}", tier.name, escape_text(&f.to_string()));
        }
        println!(
            "tier {}: {} objects, {} blocking, {} warnings",
            tier.name,
            set.objects.len(),
            blocking,
            findings.len() - blocking
        );
        blocked |= blocking > 0;
    }
    if blocked {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The tier's inventory from its state ConfigMap. A state that cannot be read counts as empty
/// (as on a first install), which refuses more, never less.
pub(super) async fn tier_inventory(
    client: &kube::Client,
    state: &crate::config::StateConfig,
    tier: &crate::config::TierConfig,
) -> crate::state::Inventory {
    tier_state(client, state, tier).await.inventory
}

/// The tier's state (its inventory, the Jobs it recorded finished), or the default (as on a
/// first install) when it cannot be read, said on stderr.
pub(super) async fn tier_state(
    client: &kube::Client,
    state: &crate::config::StateConfig,
    tier: &crate::config::TierConfig,
) -> crate::state::TierState {
    let namespace = crate::state::StateStore::default_namespace(state);
    let store = crate::state::StateStore::new(client.clone(), &namespace);
    match store.load(&tier.name).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "note: tier {}: its inventory cannot be read ({e}); objects are checked as on a first install",
                tier.name
            );
            Default::default()
        }
    }
}

/// The ownership refusals of `set` in the cluster (see [`crate::ownership`]) against the tier's
/// `inventory`, each desired object read once.
pub(super) async fn ownership_findings(
    client: &kube::Client,
    tier: &crate::config::TierConfig,
    set: &DesiredSet,
    inventory: &crate::state::Inventory,
) -> Result<Vec<Finding>, CliError> {
    let live = crate::live::ApiLive::new(client.clone());
    Ok(crate::ownership::check(set, tier, inventory, &live).await?)
}
