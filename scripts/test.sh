#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
# installs what is missing, builds the local control plane (cached in ~/.cache/gitopsd),
# starts the tests' own control plane (~/.cache/gitopsd/cluster-test, ports 16450-16455) unless
# it is already up, checks formatting and lints, runs every test, and stops
# the control plane again if it started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH

scripts/install-deps.sh --rust
scripts/build-control-plane.sh
GITOPSD_KUSTOMIZE=$(scripts/build-kustomize.sh | tail -n 1)
export GITOPSD_KUSTOMIZE
# The issue-14 corpus (tests/it/corpus.rs, benches/corpus.rs): published install manifests from
# the Go module proxy at pinned versions, sha256-checked (tests/fixtures/corpus/sources.tsv).
GITOPSD_CORPUS=$(scripts/corpus.sh | tail -n 1)
export GITOPSD_CORPUS

# A control plane of the tests' own (this directory and port unless set), never the default one
# the quickstart runs: its daemon reconciles the example's shop-* namespaces, which the drift
# tests apply too, and the two would fight.
export GITOPSD_CLUSTER_DIR=${GITOPSD_CLUSTER_DIR:-${GITOPSD_CACHE:-$HOME/.cache/gitopsd}/cluster-test}
export GITOPSD_CLUSTER_PORT=${GITOPSD_CLUSTER_PORT:-16450}
started=0
if ! scripts/cluster.sh status >/dev/null 2>&1; then
  started=1
fi
# tests/faults_apiserver.rs stops and starts the API server of a control plane of its own, which
# it brings up itself (this directory and port); stopped at the end if it was not up before.
faults=(env GITOPSD_CLUSTER_DIR="${GITOPSD_CACHE:-$HOME/.cache/gitopsd}/cluster-faults" GITOPSD_CLUSTER_PORT=16470 GITOPSD_KWOK_NODES=1)
faults_started=0
if ! "${faults[@]}" scripts/cluster.sh status >/dev/null 2>&1; then
  faults_started=1
fi
stop() {
  if ((faults_started)); then "${faults[@]}" scripts/cluster.sh down || true; fi
  if ((started)); then scripts/cluster.sh down; fi
}
trap stop EXIT
GITOPSD_TEST_KUBECONFIG=$(scripts/cluster.sh up | tail -n 1)
export GITOPSD_TEST_KUBECONFIG

echo "== shellcheck"
shellcheck -x -S warning scripts/*.sh .ci/run
echo "== cargo fmt --check"
cargo fmt --all -- --check
# No two modules may import each other, directly or through others (src/module_cycles.rs):
# run on its own first so that a cycle is reported by name before the long test run.
echo "== module cycles"
cargo test --locked --lib module_cycles
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test (cluster: $GITOPSD_TEST_KUBECONFIG)"
cargo test --locked
