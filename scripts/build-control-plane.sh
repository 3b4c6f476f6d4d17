#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy, once per machine:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok,
# and kustomize, which the render stage runs for directories with a kustomization.yaml.
# Binaries land in $GITOPSD_CACHE/bin/<component>-<version>/ (default ~/.cache/gitopsd),
# so a version bump in versions.env builds anew and an unchanged one costs nothing.
#
# Usage: scripts/build-control-plane.sh                  build what is missing
#        scripts/build-control-plane.sh --print-bin-dirs  print where each component lives
#        scripts/build-control-plane.sh --kustomize       build kustomize only; print its path
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/versions.env"

CACHE=${GITOPSD_CACHE:-$HOME/.cache/gitopsd}
K8S_BIN=$CACHE/bin/kubernetes-$KUBERNETES_VERSION
ETCD_BIN=$CACHE/bin/etcd-$ETCD_VERSION
KWOK_BIN=$CACHE/bin/kwok-$KWOK_VERSION
KUSTOMIZE_BIN=$CACHE/bin/kustomize-$KUSTOMIZE_VERSION

if [[ ${1:-} == --print-bin-dirs ]]; then
  echo "K8S_BIN=$K8S_BIN"
  echo "ETCD_BIN=$ETCD_BIN"
  echo "KWOK_BIN=$KWOK_BIN"
  echo "KUSTOMIZE_BIN=$KUSTOMIZE_BIN"
  exit 0
fi

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Go builds the control plane only; the product is Rust. If the machine's Go is older than a
# module needs, GOTOOLCHAIN=auto fetches the right toolchain from the Go module proxy.
ensure_go() {
  if ! command -v go >/dev/null 2>&1; then
    for d in /usr/local/go/bin /usr/lib/go/bin; do
      [[ -x $d/go ]] && export PATH=$d:$PATH && break
    done
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "no Go toolchain found; installing Debian's golang-go (GOTOOLCHAIN=auto upgrades it as needed)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq golang-go >/dev/null; } ||
      die "could not install Go with apt-get; install Go >= 1.26 and retry"
  fi
  export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
  export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
  export CGO_ENABLED=0
}

# Runs a build step with its output in a log file, and on failure names the step and the log.
run_logged() {
  local what=$1 logfile=$2
  shift 2
  log "$what (log: $logfile)"
  local start=$SECONDS
  if ! "$@" >"$logfile" 2>&1; then
    log "ERROR: $what failed; last lines of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
  log "$what: done in $((SECONDS - start))s"
}

build_kubernetes() {
  local stamp=$K8S_BIN/.complete
  [[ -f $stamp ]] && return 0
  local src=$CACHE/src/kubernetes-$KUBERNETES_VERSION
  mkdir -p "$src" "$K8S_BIN"
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local staging=v0.${KUBERNETES_VERSION#v1.}

  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with
  # ./staging paths, which mean nothing outside its own repository; map each to its published
  # version instead. The list comes from the release's own go.mod, so it follows version bumps.
  local mod
  mod=$(cd "$src" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f $mod ]] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
  {
    echo "module gitopsd.local/controlplane/kubernetes"
    echo
    echo "go $(sed -n 's/^go //p' "$mod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$mod"
    echo ")"
  } >"$src/go.mod"

  local pkg=k8s.io/component-base/version
  local cgo=k8s.io/client-go/pkg/version
  local date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w"
  for p in $pkg $cgo; do
    ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  (
    cd "$src"
    run_logged "download Kubernetes $KUBERNETES_VERSION modules" "$src/download.log" \
      go get k8s.io/kubernetes/cmd/kube-apiserver@"$KUBERNETES_VERSION"
    run_logged "build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION" \
      "$src/build.log" go build -mod=mod -trimpath -ldflags "$ldflags" -o "$K8S_BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
  touch "$stamp"
}

build_etcd() {
  local stamp=$ETCD_BIN/.complete
  [[ -f $stamp ]] && return 0
  local src=$CACHE/src/etcd-$ETCD_VERSION
  mkdir -p "$src" "$ETCD_BIN"
  # etcd's own main module carries replace directives, so `go install` refuses it; a two-line
  # main around etcdmain builds the same server from the published server module.
  cat >"$src/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  printf 'module gitopsd.local/controlplane/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$src/go.mod"
  (
    cd "$src"
    run_logged "download etcd $ETCD_VERSION modules" "$src/download.log" go mod tidy
    run_logged "build etcd $ETCD_VERSION" "$src/build.log" \
      go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd" .
  )
  touch "$stamp"
}

build_kwok() {
  local stamp=$KWOK_BIN/.complete
  [[ -f $stamp ]] && return 0
  mkdir -p "$KWOK_BIN" "$CACHE/src"
  run_logged "build kwok $KWOK_VERSION" "$CACHE/src/kwok-$KWOK_VERSION.log" \
    env GOBIN="$KWOK_BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok does nothing without Stages (kwokctl embeds its defaults; the bare binary does not):
  # keep the release's own "fast" node and pod stages, and the node heartbeat with a Lease.
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d $dir/kustomize/stage ]] || die "kwok $KWOK_VERSION has no kustomize/stage directory"
  mkdir -p "$KWOK_BIN/stages"
  cp "$dir"/kustomize/stage/node/fast/node-initialize.yaml \
    "$dir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$dir"/kustomize/stage/pod/fast/pod-*.yaml "$KWOK_BIN/stages/"
  chmod 644 "$KWOK_BIN"/stages/*.yaml
  touch "$stamp"
}

build_kustomize() {
  local stamp=$KUSTOMIZE_BIN/.complete
  [[ -f $stamp ]] && return 0
  mkdir -p "$KUSTOMIZE_BIN" "$CACHE/src"
  run_logged "build kustomize $KUSTOMIZE_VERSION" "$CACHE/src/kustomize-$KUSTOMIZE_VERSION.log" \
    env GOBIN="$KUSTOMIZE_BIN" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  [[ -x $KUSTOMIZE_BIN/kustomize ]] || die "go install succeeded but $KUSTOMIZE_BIN/kustomize is missing"
  touch "$stamp"
}

mkdir -p "$CACHE"
# One build at a time per machine: parallel test runs must not build into the same directory.
exec 9>"$CACHE/.build.lock"
flock 9
if [[ ${1:-} == --kustomize ]]; then
  [[ -f $KUSTOMIZE_BIN/.complete ]] || { ensure_go; build_kustomize; }
  echo "$KUSTOMIZE_BIN/kustomize"
  exit 0
fi
if [[ -f $K8S_BIN/.complete && -f $ETCD_BIN/.complete && -f $KWOK_BIN/.complete &&
  -f $KUSTOMIZE_BIN/.complete ]]; then
  exit 0
fi
ensure_go
log "building the control plane into $CACHE/bin (first run on this machine: this takes a while)"
total=$SECONDS
build_etcd
build_kwok
build_kustomize
build_kubernetes
log "control plane built in $((SECONDS - total))s"
