//! `gitopsd diff`: the drift between a tier's desired set and the cluster, exit codes as
//! `kubectl diff`.

use super::*;

/// `gitopsd diff` exit codes, as `kubectl diff` has them.
pub(super) const EXIT_DRIFT: u8 = 1;
pub(super) const EXIT_DIFF_ERROR: u8 = 2;

pub(super) async fn diff(args: DiffArgs, report: Report) -> ExitCode {
    let error = ExitCode::from(EXIT_DIFF_ERROR);
    let config = match args.config.as_deref().map(Config::load).transpose() {
        Ok(c) => c,
        Err(e) => {
            report.error("invalid config", &e);
            return error;
        }
    };
    let tier = match &config {
        Some(c) => match c.tier(&args.tier) {
            Some(t) => t.clone(),
            None => {
                report.error(
                    "unknown tier",
                    &format!("the config has no tier {:?}", args.tier),
                );
                return error;
            }
        },
        None => default_tier(&args.tier),
    };
    let source = match &config {
        Some(c) => c.source.clone(),
        None => match bare_source(args.repo.repo.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                report.error("no repo", &e);
                return error;
            }
        },
    };
    let git_ref = args
        .repo
        .effective_ref(config.as_ref().map(|_| tier.git_ref.as_str()));
    let conn = match crate::cluster::connect(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            report.error("cannot connect to Kubernetes", &e);
            return error;
        }
    };
    let scopes = match crate::discovery::discover(&conn.client).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            report.error("cannot learn which kinds are namespaced", &e);
            return error;
        }
    };
    let limits = config
        .as_ref()
        .map(|c| c.render.limits())
        .unwrap_or_default();
    let rendered = render_at(
        source,
        args.repo.repo.clone(),
        git_ref,
        args.tier.clone(),
        limits,
        scopes,
    )
    .await;
    let set = match rendered {
        Ok((set, _)) => set,
        Err(e) => {
            report.error("render failed", &e);
            return error;
        }
    };
    // What the daemon would refuse to take (see `crate::ownership`): said on stderr, so the
    // JSON on stdout stays whole, and the exit code is an error's (2) after the diff.
    let state = config.as_ref().map(|c| c.state.clone()).unwrap_or_default();
    let tier_state = tier_state(&conn.client, &state, &tier).await;
    let inventory = &tier_state.inventory;
    let refused = match ownership_findings(&conn.client, &tier, &set, inventory).await {
        Ok(findings) => {
            for f in &findings {
                eprintln!("{}", escape_text(&f.to_string()));
            }
            !findings.is_empty()
        }
        Err(e) => {
            report.error("cannot check who holds the objects", &e);
            return error;
        }
    };
    let live = crate::live::ApiLive::new(conn.client);
    let confirm = crate::drift::ApiDryRun::new(live.clone());
    let mut drift = match crate::drift::detect(&set, &tier, &live, &confirm).await {
        Ok(mut d) => {
            // What the daemon says of extra objects: pruned if its inventory holds them (by
            // identity, whatever the version).
            crate::drift::settle_extras(&mut d, &tier, &|k| inventory.contains_key(k));
            d
        }
        Err(e) => {
            report.error("drift detection failed", &e);
            return error;
        }
    };
    // A Job its TTL deleted after it finished for this manifest is no drift (the daemon's
    // record in the tier state).
    crate::reconcile::drop_finished_jobs(&mut drift, &set, &tier_state);
    let text = match args.output {
        DiffFormat::Json => match serde_json::to_string_pretty(&drift) {
            Ok(t) => t + "\n",
            Err(e) => {
                report.error("cannot print the drift report", &e);
                return error;
            }
        },
        DiffFormat::Text => {
            use std::io::IsTerminal;
            crate::drift::render_text(&drift, std::io::stdout().is_terminal())
        }
    };
    {
        use std::io::Write;
        if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
            report.error("cannot print the drift report", &e);
            return error;
        }
    }
    if refused {
        eprintln!(
            "tier {}: the daemon refuses this revision (see the errors above); nothing of it would be applied",
            tier.name
        );
        error
    } else if drift.has_drift() {
        ExitCode::from(EXIT_DRIFT)
    } else {
        ExitCode::SUCCESS
    }
}

/// A tier with no config: default policy (apply everything), default severity rules.
pub(super) fn default_tier(name: &str) -> crate::config::TierConfig {
    crate::config::TierConfig {
        name: name.to_owned(),
        git_ref: "main".to_owned(),
        namespaces: Vec::new(),
        cluster_scoped: false,
        prune: Default::default(),
        apply: Default::default(),
        service_account: None,
        promote_from: None,
        soak: None,
        gate: Default::default(),
        windows: Vec::new(),
        critical_outside_windows: Default::default(),
        require_signed_commits: None,
        policy: Default::default(),
        rollback: None,
        validation: Default::default(),
        severity: Vec::new(),
        adopt: Vec::new(),
    }
}
