//! The `notifications` section: where to send word of what happened (sinks), and which events
//! of which tiers go where (routes).

use super::*;

/// Outbound notifications; absent, nothing is sent and no delivery task runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationsConfig {
    pub sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Notifications waiting per sink; past it, new ones are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The deadline of one delivery attempt (connect, send, answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per notification, the first included (retried with jittered backoff).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_queue() -> usize {
    256
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_attempts() -> u32 {
    4
}

/// What a notification is about: a closed set, named in routes' `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// New drift at or above the route's `minSeverity` (default critical).
    DriftFound,
    /// A sync failed (told once per revision and error, again after a success).
    SyncFailed,
    /// A revision was rolled back.
    RolledBack,
    /// A promotion gate, soak or signature check holds a revision back (a closed change
    /// window is no event: it opens by itself).
    PromotionBlocked,
    /// A revision became healthy in a tier no other tier promotes from: it went all the way.
    RevisionHealthy,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::DriftFound,
        NotifyEvent::SyncFailed,
        NotifyEvent::RolledBack,
        NotifyEvent::PromotionBlocked,
        NotifyEvent::RevisionHealthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::DriftFound => "drift-found",
            NotifyEvent::SyncFailed => "sync-failed",
            NotifyEvent::RolledBack => "rolled-back",
            NotifyEvent::PromotionBlocked => "promotion-blocked",
            NotifyEvent::RevisionHealthy => "revision-healthy",
        }
    }
}

/// One sink: a name routes refer to, and where it sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSink")]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
}

/// Where a sink sends, and how.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Webhook(WebhookSink),
    Slack(SlackSink),
    Alertmanager(AlertmanagerSink),
}

impl SinkKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Slack(_) => "slack",
            SinkKind::Alertmanager(_) => "alertmanager",
        }
    }
}

/// A generic webhook: the notification's JSON, signed with HMAC-SHA256 of the body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSink {
    pub url: String,
    /// The HMAC key (`X-Gitopsd-Signature: sha256=<hex>`), read at start-up.
    pub secret_file: PathBuf,
}

/// A Slack-compatible incoming webhook (`{"text": ...}`); its URL is the secret.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackSink {
    pub url_file: PathBuf,
}

/// An Alertmanager: alerts posted to `<url>/api/v2/alerts`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertmanagerSink {
    pub url: String,
    /// An alert's `endsAt`: events are moments, so each alert resolves by itself this long
    /// after it was sent.
    #[serde(default = "default_resolve_after", with = "humantime_serde")]
    pub resolve_after: Duration,
}

fn default_resolve_after() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    webhook: Option<WebhookSink>,
    slack: Option<SlackSink>,
    alertmanager: Option<AlertmanagerSink>,
}

impl TryFrom<RawSink> for SinkConfig {
    type Error = String;

    fn try_from(raw: RawSink) -> Result<Self, String> {
        let kinds: Vec<SinkKind> = [
            raw.webhook.map(SinkKind::Webhook),
            raw.slack.map(SinkKind::Slack),
            raw.alertmanager.map(SinkKind::Alertmanager),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[SinkKind; 1]>::try_from(kinds) {
            Ok([kind]) => Ok(SinkConfig {
                name: raw.name,
                kind,
            }),
            Err(kinds) => Err(format!(
                "sink {:?}: expected exactly one of webhook, slack, alertmanager; found {}",
                raw.name,
                if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds
                        .iter()
                        .map(SinkKind::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
        }
    }
}

/// Which events of which tiers go to one sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteConfig {
    /// Tier names; empty: every tier.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Empty: every event.
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
    /// The least severity of drift that is told (`drift-found` only); default critical.
    #[serde(default)]
    pub min_severity: Option<OverrideSeverity>,
    /// A sink's name.
    pub sink: String,
}

impl NotificationsConfig {
    /// Rules across fields: names unique and known, URLs that can be sent to. The error is
    /// (field under `notifications.`, message).
    pub(super) fn check(&self, tiers: &[TierConfig]) -> Result<(), (String, String)> {
        if self.queue == 0 {
            return Err(("queue".into(), "expected at least 1".into()));
        }
        if self.attempts == 0 {
            return Err(("attempts".into(), "expected at least 1".into()));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(("timeout".into(), "expected at least 100ms".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.name.trim().is_empty() {
                return Err((format!("sinks[{i}].name"), "expected a name".into()));
            }
            if !names.insert(sink.name.as_str()) {
                return Err((
                    format!("sinks[{i}].name"),
                    format!(
                        "sink {:?} is defined twice; names must be unique",
                        sink.name
                    ),
                ));
            }
            let url = match &sink.kind {
                SinkKind::Webhook(w) => Some(("webhook.url", &w.url)),
                SinkKind::Alertmanager(a) => Some(("alertmanager.url", &a.url)),
                SinkKind::Slack(_) => None,
            };
            if let Some((field, url)) = url {
                check_url(url).map_err(|why| (format!("sinks[{i}].{field}"), why))?;
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !names.contains(route.sink.as_str()) {
                let known: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
                return Err((
                    format!("routes[{i}].sink"),
                    format!(
                        "expected the name of a sink; found {:?} (sinks: {})",
                        route.sink,
                        known.join(", ")
                    ),
                ));
            }
            for (j, tier) in route.tiers.iter().enumerate() {
                if !tiers.iter().any(|t| &t.name == tier) {
                    return Err((
                        format!("routes[{i}].tiers[{j}]"),
                        format!("expected the name of a tier; found {tier:?}"),
                    ));
                }
            }
            if route.min_severity == Some(OverrideSeverity::Ignore) {
                return Err((
                    format!("routes[{i}].minSeverity"),
                    "expected low, medium, high or critical".into(),
                ));
            }
        }
        Ok(())
    }

    /// The files the sinks read at start-up (field under `notifications.`, path, secret).
    pub(super) fn files(&self) -> Vec<(String, &Path, bool)> {
        self.sinks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.kind {
                SinkKind::Webhook(w) => Some((
                    format!("notifications.sinks[{i}].webhook.secretFile"),
                    w.secret_file.as_path(),
                    true,
                )),
                SinkKind::Slack(sl) => Some((
                    format!("notifications.sinks[{i}].slack.urlFile"),
                    sl.url_file.as_path(),
                    true,
                )),
                SinkKind::Alertmanager(_) => None,
            })
            .collect()
    }
}

/// An `http://` or `https://` URL with a host (what the client can send to).
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("expected an http:// or https:// URL; found {url:?} ({e})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(format!(
            "expected an http:// or https:// URL with a host; found {url:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "source: {url: /srv/config}\ntiers: [{name: a, ref: main, namespaces: [a]}, {name: b, ref: main, namespaces: [b], promoteFrom: a}]\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("gitopsd.yaml"))
    }

    #[test]
    fn sinks_and_routes_parse_with_defaults() {
        let c = parse(
            "notifications:\n  sinks:\n    - name: hook\n      webhook: {url: 'https://example.com/x', secretFile: /s}\n    - name: chat\n      slack: {urlFile: /u}\n    - name: am\n      alertmanager: {url: 'http://127.0.0.1:9093'}\n  routes:\n    - {sink: hook}\n    - {sink: am, tiers: [b], events: [drift-found, rolled-back], minSeverity: high}\n",
        )
        .expect("valid");
        let n = c.notifications.expect("configured");
        assert_eq!(n.sinks.len(), 3);
        assert_eq!(
            n.sinks[1].kind,
            SinkKind::Slack(SlackSink {
                url_file: "/u".into()
            })
        );
        assert_eq!(n.routes[0].events, Vec::<NotifyEvent>::new());
        assert_eq!(
            n.routes[1].events,
            [NotifyEvent::DriftFound, NotifyEvent::RolledBack]
        );
        assert_eq!(n.routes[1].min_severity, Some(OverrideSeverity::High));
        assert_eq!(n.queue, 256);
        assert_eq!(n.timeout, Duration::from_secs(5));
        let SinkKind::Alertmanager(am) = &n.sinks[2].kind else {
            panic!("alertmanager");
        };
        assert_eq!(am.resolve_after, Duration::from_secs(3600));
    }

    #[test]
    fn check_files_reads_the_sinks_secret_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("gitopsd.yaml");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        for (file, problem) in [
            (dir.path().join("missing"), "cannot read"),
            (empty, "is empty"),
        ] {
            let text = format!(
                "{BASE}notifications:\n  sinks:\n    - name: chat\n      slack: {{urlFile: {}}}\n",
                file.display()
            );
            std::fs::write(&config_path, &text).expect("write");
            let c = Config::parse(&text, &config_path).expect("valid");
            let e = c
                .check_files(&config_path)
                .expect_err("refused")
                .to_string();
            assert!(e.contains("notifications.sinks[0].slack.urlFile: "), "{e}");
            assert!(e.contains(problem) && e.contains(" line 6"), "{e}");
        }
    }

    #[test]
    fn a_bad_notifications_section_names_the_field() {
        let cases = [
            (
                "notifications:\n  sinks: [{name: x, webhook: {url: 'http://a', secretFile: /s}, slack: {urlFile: /u}}]\n",
                "notifications.sinks[0]",
                "exactly one of webhook, slack, alertmanager; found webhook, slack",
            ),
            (
                "notifications:\n  sinks: [{name: x}]\n",
                "notifications.sinks[0]",
                "found none",
            ),
            (
                "notifications:\n  sinks: [{name: x, alertmanager: {url: 'ftp://a'}}]\n",
                "notifications.sinks[0].alertmanager.url",
                "http:// or https://",
            ),
            (
                "notifications:\n  sinks: [{name: x, slack: {urlFile: /u}}]\n  routes: [{sink: y}]\n",
                "notifications.routes[0].sink",
                "found \"y\" (sinks: x)",
            ),
            (
                "notifications:\n  sinks: [{name: x, slack: {urlFile: /u}}]\n  routes: [{sink: x, tiers: [c]}]\n",
                "notifications.routes[0].tiers[0]",
                "found \"c\"",
            ),
            (
                "notifications:\n  sinks: [{name: x, slack: {urlFile: /u}}]\n  routes: [{sink: x, events: [sync-done]}]\n",
                "notifications.routes[0].events[0]",
                "unknown variant `sync-done`",
            ),
            (
                "notifications:\n  sinks: [{name: x, slack: {urlFile: /u}}, {name: x, slack: {urlFile: /v}}]\n",
                "notifications.sinks[1].name",
                "defined twice",
            ),
            (
                "notifications:\n  sinks: [{name: x, slack: {urlFile: /u, url: y}}]\n",
                "notifications.sinks[0]",
                "unknown field `url`",
            ),
        ];
        for (text, field, message) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(
                e.contains(&format!("{field}:")) || e.contains(&format!("{field}.")),
                "{text}: {e}"
            );
            assert!(e.contains(message), "{text}: {e}");
            assert!(e.contains(" line "), "{text}: {e}");
        }
    }
}
