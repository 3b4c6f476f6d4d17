//! Reading the config: the YAML parsed with the position of every field (`locate`), then
//! the checks across fields, each error naming the file, the line and the field.

use super::*;

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = match e.path().to_string() {
                p if p == "." => "(top level)".to_owned(),
                // The parser stopped before it knew the field: the YAML itself is broken.
                p if p.contains('?') => "YAML syntax".to_owned(),
                p => p,
            };
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!(" line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::Parse {
                path: path.to_owned(),
                location,
                field,
                message: strip_location(&inner.to_string()),
            }
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    /// Rules that span fields, which serde cannot check alone. `text` is looked up only to
    /// name the line of the field at fault.
    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            location: locate::location(text, &field),
            field,
            message,
        };
        if self.source.interval < Duration::from_secs(1) {
            return Err(invalid(
                "source.interval".into(),
                "expected at least 1s between polls".into(),
            ));
        }
        if self.source.fetch_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "source.fetchTimeout".into(),
                "expected at least 1s for a fetch (the connect alone may take that)".into(),
            ));
        }
        let k = &self.render.kustomize;
        // Go maps about 1 GiB of address space before it allocates much; with less,
        // kustomize fails to start now and then (render/sandbox.rs).
        if k.memory_bytes < 1024 * 1024 * 1024 {
            return Err(invalid(
                "render.kustomize.memoryBytes".into(),
                "expected at least 1073741824 (1 GiB): kustomize, a Go program, reserves address space before it uses it".into(),
            ));
        }
        for (field, value) in [("cpu", k.cpu), ("timeout", k.timeout)] {
            if value < Duration::from_secs(1) {
                return Err(invalid(
                    format!("render.kustomize.{field}"),
                    "expected at least 1s".into(),
                ));
            }
        }
        let r = &self.render;
        for (field, value) in [
            ("maxFileBytes", r.max_file_bytes),
            ("maxObjectBytes", r.max_object_bytes),
            ("maxTierBytes", r.max_tier_bytes),
            ("maxDocumentNodes", r.max_document_nodes as u64),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("render.{field}"),
                    "must be more than 0 (it bounds what one render may read or build)".into(),
                ));
            }
        }
        let limits = &self.source.export_limits;
        for (field, value) in [
            ("maxBytes", limits.max_bytes),
            ("maxFiles", limits.max_files),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("source.exportLimits.{field}"),
                    "must be more than 0 (it bounds what a commit may write to disk)".into(),
                ));
            }
        }
        let auth = &self.source.auth;
        if auth.token_file.is_some() && auth.ssh_key_file.is_some() {
            return Err(invalid(
                "source.auth".into(),
                "expected either tokenFile (https) or sshKeyFile (ssh), not both".into(),
            ));
        }
        if auth.ssh_key_file.is_some() && auth.known_hosts_file.is_none() {
            return Err(invalid(
                "source.auth.knownHostsFile".into(),
                "expected a known_hosts file beside sshKeyFile: gitopsd never connects to an unchecked host".into(),
            ));
        }
        if auth.token_file.is_some() && self.source.url.kind != RepoUrlKind::Https {
            return Err(invalid(
                "source.auth.tokenFile".into(),
                format!(
                    "a token authenticates https:// URLs only, and source.url is {}",
                    self.source.url
                ),
            ));
        }
        if auth.ssh_key_file.is_some() && self.source.url.kind != RepoUrlKind::Ssh {
            return Err(invalid(
                "source.auth.sshKeyFile".into(),
                format!(
                    "an SSH key authenticates ssh:// URLs only, and source.url is {}",
                    self.source.url
                ),
            ));
        }
        if self.tiers.is_empty() {
            return Err(invalid("tiers".into(), "expected at least one tier".into()));
        }
        let mut seen = std::collections::HashMap::new();
        let mut adopted = std::collections::HashMap::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            let at = |field: &str| format!("tiers[{i}].{field}");
            if let Err(why) = check_dns_label(&tier.name) {
                return Err(invalid(at("name"), why.to_string()));
            }
            if let Some(first) = seen.insert(tier.name.as_str(), i) {
                let first_field = format!("tiers[{first}].name");
                return Err(invalid(
                    at("name"),
                    format!(
                        "tier {:?} is defined twice (first as {first_field}{}); tier names must be unique: rename or remove one",
                        tier.name,
                        locate::location(text, &first_field)
                    ),
                ));
            }
            if tier.git_ref.trim().is_empty() {
                return Err(invalid(
                    at("ref"),
                    "expected a branch, tag or commit to follow".into(),
                ));
            }
            for (j, ns) in tier.namespaces.iter().enumerate() {
                if let Err(why) = check_dns_label(ns) {
                    return Err(invalid(at(&format!("namespaces[{j}]")), why.to_string()));
                }
            }
            if tier.namespaces.is_empty() && !tier.cluster_scoped {
                return Err(invalid(
                    at("namespaces"),
                    "expected at least one namespace the tier may write to (or clusterScoped: true)".into(),
                ));
            }
            if let Some(from) = &tier.promote_from {
                // Promotion flows down the list: a tier may only follow one defined before it,
                // which also rules out cycles.
                if !self.tiers[..i].iter().any(|t| &t.name == from) {
                    let known: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
                    return Err(invalid(
                        at("promoteFrom"),
                        format!(
                            "expected the name of a tier listed before {:?}; found {from:?} (tiers: {})",
                            tier.name,
                            known.join(", ")
                        ),
                    ));
                }
            }
            if tier.soak.is_some() && tier.promote_from.is_none() {
                return Err(invalid(
                    at("soak"),
                    "a soak time needs promoteFrom: it is how long that tier must be healthy"
                        .into(),
                ));
            }
            for (j, w) in tier.windows.iter().enumerate() {
                if w.duration < Duration::from_secs(60) {
                    return Err(invalid(
                        at(&format!("windows[{j}].duration")),
                        "expected a window of at least 1m".into(),
                    ));
                }
            }
            let prune = &tier.prune;
            if prune.max_delete_percent == 0 || prune.max_delete_percent > 100 {
                return Err(invalid(
                    at("prune.maxDeletePercent"),
                    format!(
                        "expected a share of the inventory from 1 to 100 (percent); found {}",
                        prune.max_delete_percent
                    ),
                ));
            }
            for (j, k) in prune.kinds.iter().enumerate() {
                if !PROTECTED_KINDS.contains(&k.as_str()) {
                    return Err(invalid(
                        at(&format!("prune.kinds[{j}]")),
                        format!(
                            "expected one of the kinds that are protected from prune ({}); found {k:?} (other kinds are pruned without opting in)",
                            PROTECTED_KINDS.join(", ")
                        ),
                    ));
                }
            }
            if tier.apply.concurrency == 0 || tier.apply.concurrency > 256 {
                return Err(invalid(
                    at("apply.concurrency"),
                    format!(
                        "expected 1 to 256 requests in flight; found {}",
                        tier.apply.concurrency
                    ),
                ));
            }
            // The namespace of the ServiceAccounts the tiers write as is the seat of every
            // tier's identity: a tier that may write there could bind its ServiceAccount more,
            // or delete another tier's.
            for (j, ns) in tier.namespaces.iter().enumerate() {
                if let Some((k, other)) = self.tiers.iter().enumerate().find(|(_, t)| {
                    t.service_account
                        .as_ref()
                        .is_some_and(|sa| &sa.namespace == ns)
                }) {
                    return Err(invalid(
                        at(&format!("namespaces[{j}]")),
                        format!(
                            "namespace {ns:?} holds the ServiceAccount tier {:?} writes as (tiers[{k}].serviceAccount); no tier may write there: keep the tiers' ServiceAccounts in a namespace of their own (e.g. gitopsd's)",
                            other.name
                        ),
                    ));
                }
            }
            // The state ConfigMaps hold each tier's inventory, the proof of what it owns (and
            // so what it prunes): no tier may write beside them.
            if let Some(state_ns) = self.state.namespace.as_deref().map(str::trim)
                && let Some(j) = tier.namespaces.iter().position(|ns| ns == state_ns)
            {
                return Err(invalid(
                    at(&format!("namespaces[{j}]")),
                    format!(
                        "namespace {state_ns:?} holds the tiers' state (state.namespace); no tier may write there: a tier that could would rewrite another tier's inventory"
                    ),
                ));
            }
            if let Some(rb) = &tier.rollback
                && rb.health_timeout < Duration::from_secs(1)
            {
                return Err(invalid(
                    at("rollback.healthTimeout"),
                    "expected at least 1s".into(),
                ));
            }
            self.validate_adopt(i, &mut adopted)
                .map_err(|(field, message)| invalid(at(&field), message))?;
        }
        self.analysis
            .check()
            .map_err(|(field, message)| invalid(format!("analysis.{field}"), message))?;
        if let Some(n) = &self.notifications {
            n.check(&self.tiers)
                .map_err(|(field, message)| invalid(format!("notifications.{field}"), message))?;
        }
        Ok(())
    }

    /// A tier adopts only inside its own scope, and no object is adopted by two tiers (both
    /// would take it, and each would then refuse it as the other's).
    fn validate_adopt<'a>(
        &'a self,
        i: usize,
        adopted: &mut std::collections::HashMap<(&'a str, Option<&'a str>, &'a str), &'a str>,
    ) -> Result<(), (String, String)> {
        let tier = &self.tiers[i];
        for (j, a) in tier.adopt.iter().enumerate() {
            let field = |f: &str| format!("adopt[{j}]{f}");
            let listed = |ns: &str| tier.namespaces.iter().any(|n| n == ns);
            match &a.namespace {
                Some(ns) if !listed(ns) => {
                    return Err((
                        field(".namespace"),
                        format!(
                            "{ns:?} is not one of tier {:?}'s namespaces ({}); a tier adopts only inside them",
                            tier.name,
                            tier.namespaces.join(", ")
                        ),
                    ));
                }
                None if a.kind == "Namespace" && !listed(&a.name) => {
                    return Err((
                        field(".name"),
                        format!(
                            "Namespace {:?} is not one of tier {:?}'s namespaces ({}); list it under namespaces first",
                            a.name,
                            tier.name,
                            tier.namespaces.join(", ")
                        ),
                    ));
                }
                None if !tier.cluster_scoped => {
                    return Err((
                        field(""),
                        format!(
                            "{a} has no namespace, so it is cluster-scoped, and tier {:?} may not hold cluster-scoped objects (set clusterScoped: true, or give the namespace)",
                            tier.name
                        ),
                    ));
                }
                _ => {}
            }
            let id = (a.kind.as_str(), a.namespace.as_deref(), a.name.as_str());
            if let Some(other) = adopted.insert(id, &tier.name) {
                let why = if other == tier.name {
                    format!("{a} is listed twice")
                } else {
                    format!("{a} is adopted by tier {other:?} too; one object belongs to one tier")
                };
                return Err((field(""), why));
            }
        }
        Ok(())
    }

    /// The files the config names, each read once to prove it can be (`gitopsd run --check`;
    /// the daemon reads them at start-up and would fail there). Contents are never shown; a
    /// token or secret file must not be empty. `path` is the config file, read again only to
    /// name the field's line.
    pub fn check_files(&self, path: &Path) -> Result<(), ConfigError> {
        let auth = &self.source.auth;
        let named = [
            ("source.auth.tokenFile", &auth.token_file, true),
            ("source.auth.sshKeyFile", &auth.ssh_key_file, false),
            ("source.auth.knownHostsFile", &auth.known_hosts_file, false),
            (
                "source.webhookSecretFile",
                &self.source.webhook_secret_file,
                true,
            ),
            ("http.tokenFile", &self.http.token_file, true),
        ];
        let mut files: Vec<(String, &Path, bool)> = named
            .into_iter()
            .filter_map(|(field, file, secret)| Some((field.to_owned(), file.as_deref()?, secret)))
            .collect();
        for (i, tier) in self.tiers.iter().enumerate() {
            if let Some(s) = &tier.require_signed_commits {
                files.push((
                    format!("tiers[{i}].requireSignedCommits.sshAllowedSigners"),
                    s.ssh_allowed_signers.as_path(),
                    false,
                ));
            }
        }
        if let Some(n) = &self.notifications {
            files.extend(n.files());
        }
        for (field, file, secret) in files {
            let problem = match std::fs::read(file) {
                Err(e) => format!(
                    "cannot read {}: {e}; create the file, or remove {field}",
                    file.display()
                ),
                Ok(bytes) if secret && bytes.trim_ascii().is_empty() => format!(
                    "{} is empty (or only whitespace); write the secret into it, or remove {field}",
                    file.display()
                ),
                Ok(_) => continue,
            };
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                location: locate::location(&text, &field),
                field,
                message: problem,
            });
        }
        Ok(())
    }

    pub fn tier(&self, name: &str) -> Option<&TierConfig> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

/// serde_yaml wraps its message as "PATH: MESSAGE at line L column C"; the error shows the
/// field and the position once each, so both are cut from the message.
pub(super) fn strip_location(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let is_path = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'))
    };
    match message.split_once(": ") {
        Some((path, rest)) if is_path(path) => rest.to_owned(),
        _ => message.to_owned(),
    }
}

/// A name Kubernetes would refuse where the config puts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "expected a DNS label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit); found {0:?}"
    )]
    DnsLabel(String),
    #[error(
        "expected a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253); found {0:?}"
    )]
    DnsSubdomain(String),
}

/// Tier names become label values and namespace names become namespaces: RFC 1123 labels.
pub(super) fn check_dns_label(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::DnsLabel(s.to_owned()))
    }
}

/// ServiceAccount names are DNS subdomains: labels joined by '.', at most 253 characters.
pub(super) fn check_dns_subdomain(s: &str) -> Result<(), NameError> {
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| check_dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err(NameError::DnsSubdomain(s.to_owned()))
    }
}
