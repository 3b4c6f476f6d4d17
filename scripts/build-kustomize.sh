#!/usr/bin/env bash
# Builds kustomize from the Go module proxy, once per machine, the way build-control-plane.sh
# builds kwok. The render stage runs it for directories that hold a kustomization.yaml.
# The binary lands in $GITOPSD_CACHE/bin/kustomize-<version>/ (default ~/.cache/gitopsd), so a
# version bump in versions.env builds anew and an unchanged one costs nothing.
#
# Usage: scripts/build-kustomize.sh     prints the binary's path on its last line, e.g.
#   export GITOPSD_KUSTOMIZE=$(scripts/build-kustomize.sh | tail -n 1)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

CACHE=${GITOPSD_CACHE:-$HOME/.cache/gitopsd}
KUSTOMIZE_BIN=$CACHE/bin/kustomize-$KUSTOMIZE_VERSION

log() { printf '[build-kustomize] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_go() {
  if ! command -v go >/dev/null 2>&1; then
    for d in /usr/local/go/bin /usr/lib/go/bin; do
      [[ -x $d/go ]] && export PATH=$d:$PATH && break
    done
  fi
  command -v go >/dev/null 2>&1 ||
    die "no Go toolchain found; run scripts/build-control-plane.sh (it installs one) or install Go >= 1.26"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
  export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
  export CGO_ENABLED=0
}

mkdir -p "$CACHE/src"
# Same lock as build-control-plane.sh: one Go build at a time per machine.
exec 9>"$CACHE/.build.lock"
flock 9
stamp=$KUSTOMIZE_BIN/.complete
if [[ ! -f $stamp ]]; then
  ensure_go
  mkdir -p "$KUSTOMIZE_BIN"
  logfile=$CACHE/src/kustomize-$KUSTOMIZE_VERSION.log
  log "build kustomize $KUSTOMIZE_VERSION (log: $logfile)"
  start=$SECONDS
  if ! env GOBIN="$KUSTOMIZE_BIN" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >"$logfile" 2>&1; then
    log "ERROR: build kustomize $KUSTOMIZE_VERSION failed; last lines of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
  [[ -x $KUSTOMIZE_BIN/kustomize ]] || die "go install succeeded but $KUSTOMIZE_BIN/kustomize is missing; see $logfile"
  log "build kustomize $KUSTOMIZE_VERSION: done in $((SECONDS - start))s"
  touch "$stamp"
fi
echo "$KUSTOMIZE_BIN/kustomize"
