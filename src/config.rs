//! The daemon config (`gitopsd.yaml`): typed, validated once at start-up.
//!
//! Every error names the file, the field (as a path such as `tiers[2].policy.low`) and what was
//! expected there, because an operator reading a crash-looping pod's log has nothing else.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod analysis;
mod checks;
mod locate;
mod notify;
mod pattern;
mod policy;
mod sections;
mod source;
mod tier;
mod validation;

pub use analysis::*;
pub use checks::*;
pub use notify::*;
pub use pattern::{PathPattern, PatternError};
pub use policy::*;
pub use sections::*;
pub use source::*;
pub use tier::*;
pub use validation::{Level, SecurityRule, UnknownSecurityRule, ValidationConfig};

/// What went wrong reading the config, always with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{location}: {field}: {message}")]
    Parse {
        path: PathBuf,
        /// ` line L column C`, or empty where the parser knows no position.
        location: String,
        field: String,
        message: String,
    },
    #[error("{path}{location}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        /// ` line L column C` of the field's value, or empty when the field is not written
        /// (it took its default).
        location: String,
        field: String,
        message: String,
    },
}

/// The whole daemon config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub source: SourceConfig,
    pub tiers: Vec<TierConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    #[serde(default)]
    pub render: RenderConfig,
    /// Metric analysis for rollouts (not yet wired: issue 16).
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Outbound notifications (webhook, Slack, Alertmanager); none when absent.
    #[serde(default)]
    pub notifications: Option<NotificationsConfig>,
}

/// Whether a window lets changes in or keeps them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Changes land only inside an allow window (when the tier has any).
    #[default]
    Allow,
    /// No change lands inside a deny window; deny beats allow.
    Deny,
}

/// A change window: opens at each firing of `schedule` in `timezone`, for `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeWindow {
    #[serde(default)]
    pub kind: WindowKind,
    pub schedule: CronSchedule,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default = "default_timezone")]
    pub timezone: Timezone,
}

fn default_timezone() -> Timezone {
    Timezone(chrono_tz::Tz::UTC)
}

/// A standard 5-field cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub expression: String,
    schedule: croner::Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl CronSchedule {
    /// The firings strictly after `from`, in `from`'s timezone, earliest first. As in standard
    /// cron, when both day-of-month and day-of-week are restricted a day matching EITHER fires.
    pub fn firings_after<Tz: chrono::TimeZone>(
        &self,
        from: chrono::DateTime<Tz>,
    ) -> impl Iterator<Item = chrono::DateTime<Tz>> {
        self.schedule.clone().iter_after(from)
    }
}

/// Why a cron schedule is refused.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(
        "expected a 5-field cron schedule (minute hour day-of-month month day-of-week, e.g. \"0 8 * * 1-5\"), found {fields} fields in {given:?}"
    )]
    Fields { fields: usize, given: String },
    #[error("invalid cron schedule {given:?}: {source}")]
    Invalid {
        given: String,
        #[source]
        source: croner::errors::CronError,
    },
}

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = s.split_whitespace().count();
        if fields != 5 {
            return Err(CronError::Fields {
                fields,
                given: s.to_owned(),
            });
        }
        // Seconds disallowed: windows start on the minute. The default parser has standard
        // semantics: days of the week 0-7 (0 and 7 = Sunday) or names, and day-of-month OR
        // day-of-week when both are restricted.
        let schedule = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(s)
            .map_err(|source| CronError::Invalid {
                given: s.to_owned(),
                source,
            })?;
        Ok(CronSchedule {
            expression: s.to_owned(),
            schedule,
        })
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IANA timezone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<chrono_tz::Tz>().map(Timezone).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown timezone {s:?}; expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ))
        })
    }
}

/// Durations written as operators write them: `30s`, `1m`, `10h`, `1h 30m`.
mod humantime_serde {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); expected a number with a unit, e.g. \"30s\", \"5m\", \"10h\""
            ))
        })
    }

    /// An optional duration (`soak`).
    pub mod option {
        use std::time::Duration;

        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = include_str!("../examples/gitopsd.yaml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gitopsd.yaml"))
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn the_example_config_parses_into_typed_tiers() {
        let c = parse(DESIGN_EXAMPLE).expect("example config is valid");
        assert_eq!(c.source.url.kind, RepoUrlKind::File);
        assert_eq!(c.source.interval, Duration::from_secs(60));
        let names: Vec<_> = c.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["experimental", "validation", "operational"]);
        let op = c.tier("operational").expect("operational tier");
        assert_eq!(op.promote_from.as_deref(), Some("validation"));
        assert_eq!(op.policy.high, Action::Alert);
        assert_eq!(op.policy.low, Action::Ignore);
        assert_eq!(op.windows[0].duration, Duration::from_secs(10 * 3600));
        assert_eq!(op.windows[0].timezone.0, chrono_tz::Europe::Berlin);
        let rb = op.rollback.expect("rollback");
        assert!(rb.on_health_failure);
        assert_eq!(rb.health_timeout, Duration::from_secs(300));
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn defaults_fill_what_the_config_leaves_out() {
        let c = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n",
        )
        .unwrap();
        assert_eq!(c.source.interval, Duration::from_secs(60));
        assert_eq!(c.tiers[0].policy, Policy::default());
        assert!(!c.tiers[0].prune.enabled);
        assert_eq!(c.tiers[0].prune.max_delete_percent, 50);
        assert_eq!(c.tiers[0].apply, ApplyConfig::default());
        assert_eq!(c.http.listen, default_listen());
    }

    #[test]
    fn leader_election_is_off_by_default_and_names_its_lease() {
        let base =
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n";
        let c = parse(base).unwrap();
        assert!(!c.leader_election.enabled);
        assert_eq!(c.leader_election.lease_name, "gitopsd-leader");
        let c = parse(&format!(
            "{base}leaderElection:\n  enabled: true\n  leaseName: l\n  namespace: ops\n"
        ))
        .unwrap();
        assert_eq!(
            c.leader_election,
            LeaderElectionConfig {
                enabled: true,
                lease_name: "l".into(),
                namespace: Some("ops".into())
            }
        );
        let err = error_of(&format!("{base}leaderElection:\n  duration: 15s\n"));
        assert!(err.contains("duration"), "{err}");
    }

    #[test]
    fn the_audit_log_defaults_to_the_source_directory_and_takes_a_path() {
        let base =
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n";
        let c = parse(base).unwrap();
        assert_eq!(
            c.audit.path_in(Path::new("/var/tmp/gitopsd")),
            Path::new("/var/tmp/gitopsd/audit.log")
        );
        let c = parse(&format!(
            "{base}audit:\n  path: /var/log/gitopsd/audit.log\n"
        ))
        .unwrap();
        assert_eq!(
            c.audit.path_in(Path::new("/var/tmp/gitopsd")),
            Path::new("/var/log/gitopsd/audit.log")
        );
        let err = error_of(&format!("{base}audit:\n  file: x\n"));
        assert!(err.contains("audit.file") || err.contains("file"), "{err}");
    }

    #[test]
    fn prune_is_a_switch_or_a_guard() {
        let tier = |prune: &str| {
            parse(&format!(
                "source: {{url: /srv/config}}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev], prune: {prune}}}\n"
            ))
            .map(|c| c.tiers[0].prune.clone())
        };
        let on = tier("true").unwrap();
        assert!(on.enabled);
        assert_eq!(on.max_delete_percent, 50);
        assert!(!on.may_prune_kind("Namespace"));
        assert!(on.may_prune_kind("ConfigMap"));
        let full =
            tier("{maxDeletePercent: 100, allowEmpty: true, kinds: [PersistentVolumeClaim]}")
                .unwrap();
        assert!(full.enabled, "a guard given in full turns prune on");
        assert_eq!(full.max_delete_percent, 100);
        assert!(full.allow_empty);
        assert!(full.may_prune_kind("PersistentVolumeClaim"));
        assert!(!full.may_prune_kind("CustomResourceDefinition"));
        let e = tier("{maxDeletePercent: 0}").unwrap_err().to_string();
        assert!(
            e.contains(
                "tiers[0].prune.maxDeletePercent: expected a share of the inventory from 1 to 100"
            ),
            "{e}"
        );
        let e = tier("{kinds: [ConfigMap]}").unwrap_err().to_string();
        assert!(
            e.contains("tiers[0].prune.kinds[0]") && e.contains("found \"ConfigMap\""),
            "{e}"
        );
        let e = tier("{maxDelete: 10}").unwrap_err().to_string();
        assert!(
            e.contains("tiers[0].prune.maxDelete: unknown field `maxDelete`"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_policy_action_names_file_field_line_and_the_choices() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    policy: {critical: fix}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 6 column 24: tiers[0].policy.critical: unknown variant `fix`, expected one of `apply`, `alert`, `ignore`"
        );
        // `prune` is what happens to an extra object, not a policy one may choose.
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    policy: {medium: prune}\n",
        );
        assert!(e.contains("unknown variant `prune`"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_named_with_the_fields_expected() {
        let e = error_of(
            "source: {url: /srv/config, intervall: 5m}\ntiers: [{name: dev, ref: main, namespaces: [dev]}]\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 1 column 28: source.intervall: unknown field `intervall`, expected one of `url`, `auth`, `interval`, `fetchTimeout`, `webhookSecretFile`, `publishHealthy`, `exportLimits`"
        );
    }

    #[test]
    fn a_bad_duration_says_what_a_duration_looks_like() {
        let e = error_of(
            "source: {url: /srv/config, interval: soon}\ntiers: [{name: dev, ref: main, namespaces: [dev]}]\n",
        );
        assert!(e.contains("source.interval"), "{e}");
        assert!(e.contains("\"30s\""), "{e}");
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let e = error_of("source: {url: /srv/config}\ntiers: [{name: dev, namespaces: [dev]}]\n");
        assert!(e.contains("tiers[0]"), "{e}");
        assert!(e.contains("missing field `ref`"), "{e}");
    }

    #[test]
    fn promote_from_must_name_an_earlier_tier() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], promoteFrom: b}\n  - {name: b, ref: main, namespaces: [b]}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 3 column 56: tiers[0].promoteFrom: expected the name of a tier listed before \"a\"; found \"b\" (tiers: a, b)"
        );
    }

    #[test]
    fn errors_found_after_parsing_name_the_line_of_the_field() {
        let e = error_of(
            "source:\n  url: /srv/config\n  interval: 0s\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 3 column 13: source.interval: expected at least 1s between polls"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    windows: [{schedule: '0 8 * * *', duration: 1s}]\n",
        );
        assert!(
            e.starts_with("gitopsd.yaml line 6 column 49: tiers[0].windows[0].duration:"),
            "{e}"
        );
    }

    #[test]
    fn check_files_names_the_field_its_line_and_the_path_never_the_contents() {
        let dir = std::env::temp_dir().join(format!("gitopsd-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cr3t-token\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let missing = dir.join("missing");
        let config_file = dir.join("gitopsd.yaml");
        let write = |source_extra: &str, http: &str| {
            let text = format!(
                "source:\n  url: https://git.example.com/c.git\n  auth: {{tokenFile: {}}}\n{source_extra}tiers: [{{name: a, ref: main, namespaces: [a]}}]\n{http}",
                token.display()
            );
            std::fs::write(&config_file, &text).unwrap();
            Config::parse(&text, &config_file).unwrap()
        };
        let ok = write("", "");
        ok.check_files(&config_file).expect("every file readable");

        let c = write(&format!("  webhookSecretFile: {}\n", missing.display()), "");
        let e = c.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{} line 4 column 22: source.webhookSecretFile: cannot read {}:",
                config_file.display(),
                missing.display()
            )),
            "{e}"
        );
        let c = write("", &format!("http:\n  tokenFile: {}\n", empty.display()));
        let e = c.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.contains("line 6 column 14: http.tokenFile:") && e.contains("is empty"),
            "{e}"
        );
        std::fs::write(&token, "").unwrap();
        std::fs::remove_file(&token).unwrap();
        let e = ok.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.contains("line 3 column 21: source.auth.tokenFile: cannot read"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn promotion_and_change_control_fields_parse_with_their_defaults() {
        let c = parse(
            "source: {url: /srv/config, publishHealthy: true}\ntiers:\n  - {name: a, ref: main, namespaces: [a]}\n  - name: b\n    ref: tier/b\n    namespaces: [b]\n    promoteFrom: a\n    soak: 30m\n    gate: baseDigest\n    criticalOutsideWindows: hold\n    requireSignedCommits: {sshAllowedSigners: /etc/gitopsd/allowed_signers}\n    windows:\n      - {schedule: \"0 8 * * 1-5\", duration: 10h, timezone: Europe/Berlin}\n      - {kind: deny, schedule: \"0 16 * * 5\", duration: 64h}\n",
        )
        .expect("valid");
        assert!(c.source.publish_healthy);
        let a = &c.tiers[0];
        assert_eq!(a.soak, None);
        assert_eq!(a.gate, PromotionGate::Revision);
        assert_eq!(a.critical_outside_windows, OutsideWindows::Apply);
        let b = &c.tiers[1];
        assert_eq!(b.soak, Some(Duration::from_secs(1800)));
        assert_eq!(b.gate, PromotionGate::BaseDigest);
        assert_eq!(b.critical_outside_windows, OutsideWindows::Hold);
        assert_eq!(b.windows[0].kind, WindowKind::Allow);
        assert_eq!(b.windows[1].kind, WindowKind::Deny);
        assert_eq!(
            b.require_signed_commits
                .as_ref()
                .map(|s| s.ssh_allowed_signers.clone()),
            Some(PathBuf::from("/etc/gitopsd/allowed_signers"))
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], soak: 5m}\n",
        );
        assert!(
            e.contains("tiers[0].soak: a soak time needs promoteFrom"),
            "{e}"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    windows: [{kind: maybe, schedule: \"0 8 * * *\", duration: 1h}]\n",
        );
        assert!(
            e.contains("unknown variant `maybe`, expected `allow` or `deny`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_tier_names_are_rejected() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a]}\n  - {name: a, ref: x, namespaces: [b]}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 4 column 12: tiers[1].name: tier \"a\" is defined twice (first as tiers[0].name line 3 column 12); tier names must be unique: rename or remove one"
        );
    }

    #[test]
    fn tier_and_namespace_names_must_be_dns_labels() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers: [{name: Prod, ref: main, namespaces: [x]}]\n",
        );
        assert!(e.contains("tiers[0].name: expected a DNS label"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\ntiers: [{name: prod, ref: main, namespaces: [ok, Not_OK]}]\n",
        );
        assert!(e.contains("tiers[0].namespaces[1]"), "{e}");
    }

    #[test]
    fn days_of_the_week_count_from_sunday_as_0_as_in_standard_cron() {
        // 2026-11-27 is a Friday, the 29th a Sunday.
        let from = chrono::DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z").expect("time");
        let days = |dow: &str| -> Vec<String> {
            let s: CronSchedule = format!("0 8 * * {dow}").parse().expect("valid");
            s.firings_after(from)
                .take(3)
                .map(|t| t.format("%a").to_string())
                .collect()
        };
        let cases = [
            ("1-5", ["Fri", "Mon", "Tue"]),
            ("0", ["Sun", "Sun", "Sun"]),
            ("7", ["Sun", "Sun", "Sun"]),
            ("0,6", ["Sat", "Sun", "Sat"]),
            ("5-7", ["Fri", "Sat", "Sun"]),
            ("*/2", ["Sat", "Sun", "Tue"]),
            ("1-5/2", ["Fri", "Mon", "Wed"]),
            ("mon-fri", ["Fri", "Mon", "Tue"]),
        ];
        for (dow, want) in cases {
            assert_eq!(days(dow), want, "{dow}");
        }
    }

    #[test]
    fn a_cron_schedule_needs_five_fields_and_a_known_timezone() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: p\n    ref: main\n    namespaces: [p]\n    windows:\n";
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * *\", duration: 1h}}\n"
        ));
        assert!(e.contains("tiers[0].windows[0].schedule"), "{e}");
        assert!(e.contains("found 4 fields"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * * 1-5\", duration: 1h, timezone: Mars/Olympus}}\n"
        ));
        assert!(e.contains("tiers[0].windows[0].timezone"), "{e}");
        assert!(e.contains("IANA"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * * 1-9\", duration: 1h}}\n"
        ));
        assert!(
            e.contains("tiers[0].windows[0].schedule: invalid cron schedule \"0 8 * * 1-9\": "),
            "{e}"
        );
    }

    #[test]
    fn ssh_keys_require_known_hosts_and_tokens_require_https() {
        let e = error_of(
            "source: {url: \"ssh://git@example.com/c.git\", auth: {sshKeyFile: /k}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.auth.knownHostsFile"), "{e}");
        let e = error_of(
            "source: {url: /srv/config, exportLimits: {maxFiles: 0}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.exportLimits.maxFiles"), "{e}");
        let e = error_of(
            "source: {url: /srv/config, exportLimits: {maxByte: 10}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("unknown field `maxByte`"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\nrender: {kustomize: {memoryBytes: 1000}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("render.kustomize.memoryBytes"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\nrender: {maxObjectBytes: 0}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(
            e.contains("render.maxObjectBytes: must be more than 0"),
            "{e}"
        );
        let c = Config::parse(
            "source: {url: /srv/config}\nrender: {kustomize: {memoryBytes: 1073741824, cpu: 10s}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
            Path::new("gitopsd.yaml"),
        )
        .expect("valid");
        let l = c.render.limits();
        assert_eq!(l.max_object_bytes, 3 << 20);
        assert_eq!(l.max_file_bytes, 64 << 20);
        assert_eq!(l.kustomize_memory_bytes, 1 << 30);
        assert_eq!(l.kustomize_cpu, Duration::from_secs(10));
        assert_eq!(l.kustomize_timeout, Duration::from_secs(60));
        let e = error_of(
            "source: {url: \"git@example.com:c.git\", auth: {tokenFile: /t}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.auth.tokenFile"), "{e}");
    }

    #[test]
    fn repo_urls_are_classified_and_unsafe_ones_refused() {
        let kind = |s: &str| s.parse::<RepoUrl>().map(|u| u.kind);
        assert_eq!(
            kind("https://git.example.com/c.git"),
            Ok(RepoUrlKind::Https)
        );
        assert_eq!(kind("ssh://git@example.com/c.git"), Ok(RepoUrlKind::Ssh));
        assert_eq!(kind("git@example.com:platform/c.git"), Ok(RepoUrlKind::Ssh));
        assert_eq!(kind("file:///srv/c"), Ok(RepoUrlKind::File));
        assert_eq!(kind("./config"), Ok(RepoUrlKind::File));
        assert!(
            kind("http://example.com/c.git")
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        assert!(
            kind("ftp://example.com/c.git")
                .unwrap_err()
                .to_string()
                .contains("`ftp://`")
        );
        assert!(
            kind("https://user:secret@example.com/c.git")
                .unwrap_err()
                .to_string()
                .contains("tokenFile")
        );
    }

    #[test]
    fn yaml_syntax_errors_carry_the_position() {
        let e = error_of("source: {url: /srv/config\ntiers: [\n");
        assert!(
            e.starts_with(
                "gitopsd.yaml line 2 column 6: YAML syntax: did not find expected ',' or '}'"
            ),
            "{e}"
        );
    }

    #[test]
    fn severity_overrides_parse_with_kind_path_and_severity_or_ignore() {
        let c = parse(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    severity:\n      - {kind: Deployment, path: spec.replicas, severity: low}\n      - {path: 'metadata.annotations.**', severity: ignore}\n",
        )
        .expect("overrides are valid");
        let o = &c.tiers[0].severity;
        assert_eq!(o[0].kind.as_deref(), Some("Deployment"));
        assert_eq!(o[0].path.as_str(), "spec.replicas");
        assert_eq!(o[0].severity, OverrideSeverity::Low);
        assert_eq!(o[1].kind, None);
        assert_eq!(o[1].severity, OverrideSeverity::Ignore);
    }

    #[test]
    fn an_invalid_severity_pattern_names_the_override_and_why() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    severity:\n      - {path: spec.replicas, severity: low}\n";
        let e = error_of(&format!(
            "{base}      - {{path: 'spec.rep*', severity: low}}\n"
        ));
        assert!(e.starts_with("gitopsd.yaml line 8 column "), "{e}");
        assert!(
            e.contains(": tiers[0].severity[1].path: invalid path pattern: field \"rep*\""),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}      - {{path: spec.replicas, severity: urgent}}\n"
        ));
        assert!(e.contains("tiers[0].severity[1].severity: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`, `ignore`"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{path: spec.replicas, level: low}}\n"
        ));
        assert!(
            e.contains("tiers[0].severity[1].level: unknown field `level`"),
            "{e}"
        );
    }

    #[test]
    fn adopt_entries_are_parsed_strictly_and_stay_inside_the_tiers_scope() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    clusterScoped: true\n";
        let c = parse(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: a}}\n      - {{apiVersion: apps/v1, kind: Deployment, namespace: a, name: api}}\n"
        ))
        .expect("valid adopt");
        let adopt = &c.tiers[0].adopt;
        assert_eq!(adopt[0].to_string(), "{kind: Namespace, name: a}");
        assert_eq!(
            adopt[1].to_string(),
            "{apiVersion: apps/v1, kind: Deployment, namespace: a, name: api}"
        );
        // Errors read while parsing carry the line.
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, nmae: x}}\n"
        ));
        assert!(
            e.starts_with("gitopsd.yaml line 8 column ") && e.contains("unknown field `nmae`"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: configmap, name: x, namespace: a}}\n"
        ));
        assert!(
            e.starts_with("gitopsd.yaml line 8 column ")
                && e.contains(
                    "tiers[0].adopt[0]: kind \"configmap\" is not a Kubernetes kind name"
                ),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, name: '*', namespace: a}}\n"
        ));
        assert!(e.contains("no wildcards"), "{e}");
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: a, namespace: a}}\n"
        ));
        assert!(e.contains("a Namespace is cluster-scoped"), "{e}");
        // Scope, checked across fields.
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, namespace: kube-system, name: x}}\n"
        ));
        assert_eq!(
            e,
            "gitopsd.yaml line 8 column 38: tiers[0].adopt[0].namespace: \"kube-system\" is not one of tier \"a\"'s namespaces (a); a tier adopts only inside them"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: kube-system}}\n"
        ));
        assert!(
            e.contains("tiers[0].adopt[0].name: Namespace \"kube-system\" is not one of tier \"a\"'s namespaces (a)"),
            "{e}"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], adopt: [{kind: ClusterRole, name: view}]}\n",
        );
        assert!(
            e.contains("tiers[0].adopt[0]: {kind: ClusterRole, name: view} has no namespace, so it is cluster-scoped, and tier \"a\" may not hold cluster-scoped objects"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt: [{{kind: ClusterRole, name: view}}]\n  - {{name: b, ref: main, namespaces: [b], clusterScoped: true, adopt: [{{kind: ClusterRole, name: view}}]}}\n"
        ));
        assert!(
            e.contains("tiers[1].adopt[0]: {kind: ClusterRole, name: view} is adopted by tier \"a\" too; one object belongs to one tier"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt: [{{kind: Namespace, name: a}}, {{kind: Namespace, name: a}}]\n"
        ));
        assert!(
            e.contains("tiers[0].adopt[1]: {kind: Namespace, name: a} is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn no_tier_may_list_the_state_namespace() {
        let e = error_of(
            "source: {url: /srv/repo}\nstate: {namespace: ops}\ntiers:\n  - {name: t, ref: main, namespaces: [shop, ops]}\n",
        );
        assert!(
            e.contains("tiers[0].namespaces[1]") && e.contains("holds the tiers' state"),
            "{e}"
        );
    }

    #[test]
    fn a_service_account_is_namespace_slash_name_or_a_map_and_named_on_error() {
        let tier = |sa: &str| {
            parse(&format!(
                "source: {{url: /srv/config}}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    serviceAccount: {sa}\n"
            ))
            .map(|c| c.tiers[0].service_account.clone())
        };
        let want = Some(ServiceAccountRef {
            namespace: "gitopsd".into(),
            name: "tier-dev".into(),
        });
        assert_eq!(tier("gitopsd/tier-dev").unwrap(), want);
        assert_eq!(tier("{namespace: gitopsd, name: tier-dev}").unwrap(), want);
        assert_eq!(
            tier("system:serviceaccount:gitopsd:tier-dev").unwrap(),
            want
        );
        assert_eq!(
            want.as_ref().map(ServiceAccountRef::username).as_deref(),
            Some("system:serviceaccount:gitopsd:tier-dev")
        );
        let none = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n",
        )
        .unwrap();
        assert_eq!(none.tiers[0].service_account, None);

        // No tier may write where the ServiceAccounts live.
        let e = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], serviceAccount: b/tier-a}\n  - {name: b, ref: main, namespaces: [b]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tiers[1].namespaces[0]: namespace \"b\" holds the ServiceAccount tier \"a\" writes as (tiers[0].serviceAccount); no tier may write there"),
            "{e}"
        );
        let e = tier("tier-dev").unwrap_err().to_string();
        assert!(e.starts_with("gitopsd.yaml line 6 column "), "{e}");
        assert!(
            e.contains("tiers[0].serviceAccount: expected NAMESPACE/NAME"),
            "{e}"
        );
        let e = tier("Gitopsd/tier-dev").unwrap_err().to_string();
        assert!(
            e.contains("line 6") && e.contains("namespace: expected a DNS label"),
            "{e}"
        );
        let e = tier("gitopsd/Tier_Dev").unwrap_err().to_string();
        assert!(e.contains("name: expected a DNS subdomain"), "{e}");
        let e = tier("{namespace: gitopsd}").unwrap_err().to_string();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = tier("{namespace: gitopsd, name: a, groups: [x]}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `groups`"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/gitopsd.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read config file /nonexistent/gitopsd.yaml")
        );
    }
}
