//! Log set-up: JSON lines in a cluster (for log collectors), readable text on a terminal.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when running in a Kubernetes pod, text otherwise.
    Auto,
    Text,
    Json,
}

impl LogFormat {
    fn use_json(self) -> bool {
        match self {
            LogFormat::Json => true,
            LogFormat::Text => false,
            // Every pod has this variable; a developer's shell does not.
            LogFormat::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level` (e.g. `gitopsd=debug`).
/// Returns whether the logs are JSON.
pub fn init(format: LogFormat, default_level: &str) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        ))
        .with_writer(std::io::stderr);
    let json = format.use_json();
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
    json
}

/// Colour codes only on a terminal: in a file or a pipe (`2> gitopsd.log`, a log collector)
/// they are bytes nobody reads; `NO_COLOR` (no-color.org) turns them off on a terminal too.
fn colour(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(!colour(false, false));
        assert!(!colour(true, true));
    }
}
