#!/usr/bin/env bash
# The quickstart, on a fresh machine: installs what is missing, builds the local control plane
# (first run only), starts it, makes a git repo of examples/config-repo (branches main,
# tier/validation, tier/operational), runs `gitopsd run` against it in the background, waits
# until every tier has synced, and prints what was applied and where the status is served.
#
#   scripts/quickstart.sh          # the demo; the cluster and the daemon stay up to explore
#   scripts/quickstart.sh stop     # stops the daemon and the local cluster
#
# GITOPSD_QUICKSTART_PORT (default 8080) is where the status endpoint listens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH

work=${GITOPSD_QUICKSTART_DIR:-$HOME/.cache/gitopsd/quickstart}
port=${GITOPSD_QUICKSTART_PORT:-8080}
pidfile=$work/gitopsd.pid
log=$work/gitopsd.log

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stop_daemon() {
  if [[ -f $pidfile ]]; then
    local pid
    pid=$(cat "$pidfile")
    # Only a gitopsd we started: the pid may have been reused.
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == gitopsd ]]; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
  fi
}

if [[ ${1:-} == stop ]]; then
  stop_daemon
  scripts/cluster.sh down
  exit 0
fi

step "Installing missing prerequisites"
scripts/install-deps.sh --rust
step "Building the local control plane (cached in ~/.cache/gitopsd after the first run)"
scripts/build-control-plane.sh
GITOPSD_KUSTOMIZE=$(scripts/build-kustomize.sh | tail -n 1)
export GITOPSD_KUSTOMIZE
step "Starting the local control plane"
kubeconfig=$(scripts/cluster.sh up | tail -n 1)
eval "$(scripts/cluster.sh env)"
step "Building gitopsd"
cargo build --locked --quiet
bin=$PWD/target/debug/gitopsd

step "Making a git repo of examples/config-repo (one branch per tier)"
stop_daemon
mkdir -p "$work"
rm -rf "$work/config-repo" "$work/workdir"
cp -r examples/config-repo "$work/config-repo"
(
  cd "$work/config-repo"
  git init -q -b main
  git add -A
  git -c user.name=quickstart -c user.email=quickstart@gitopsd.invalid commit -q -m "The example shop"
  git branch tier/validation
  git branch tier/operational
  git log --oneline -1
)
# Sync over the API needs a token (http.tokenFile): a random one, made once and kept.
[[ -s $work/api-token ]] || head -c 24 /dev/urandom | base64 >"$work/api-token"
sed -e "s#url: examples/config-repo#url: $work/config-repo#" \
  -e "s#listen: \"127.0.0.1:8080\"#listen: \"127.0.0.1:$port\"\\n  tokenFile: $work/api-token#" \
  examples/gitopsd.yaml >"$work/gitopsd.yaml"
"$bin" run --config "$work/gitopsd.yaml" --check

# Each example tier writes as its own ServiceAccount (tiers[].serviceAccount), which gitopsd
# impersonates: the ServiceAccounts and their RBAC come first, as in a cluster install.
step "Applying the tiers' ServiceAccounts and RBAC (manifests/core: namespace, rbac, tier-access)"
kubectl apply --server-side --field-manager=gitopsd-quickstart \
  -f manifests/core/namespace.yaml -f manifests/core/rbac.yaml -f manifests/core/tier-access.yaml

# The test suite applies the example's objects with no tier state (tests/it/drift.rs) and leaves
# its CRD for other tests. Labelled for a tier that has no state, gitopsd refuses to take it
# over (ownership/label-only), as it must in a real cluster; this local cluster is the
# quickstart's own, so a tier starting without state starts from a clean slate.
for tier in experimental validation operational; do
  kubectl -n gitopsd get configmap "gitopsd-state-$tier" >/dev/null 2>&1 && continue
  kubectl delete customresourcedefinitions,priorityclasses -l "gitopsd.io/tier=$tier" \
    --ignore-not-found --wait=true
done

step "Starting gitopsd run (log: $log)"
nohup "$bin" run --config "$work/gitopsd.yaml" --kubeconfig "$kubeconfig" \
  --workdir "$work/workdir" >"$log" 2>&1 &
echo $! >"$pidfile"
ready=
for _ in $(seq 240); do
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "gitopsd exited; its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
if [[ -z $ready ]]; then
  echo "gitopsd did not finish its first sync of every tier in 120 s; its log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
# The Deployments roll out on the kwok nodes, and validation and operational deploy only
# what the tier before them recorded healthy: wait until every tier is Synced and Healthy, or
# held back (Blocked: operational outside its change window, say).
tiers=(experimental validation operational)
settled() {
  local t s
  for t in "${tiers[@]}"; do
    s=$(curl -fsS "http://127.0.0.1:$port/api/v1/tiers/$t") || return 1
    # Held by a change window (or a signature): settled. By a promotion gate: not yet.
    if [[ $s == *'"sync":"Blocked"'* && $s != *'"heldBy":"promotion-gate"'* ]]; then continue; fi
    [[ $s == *'"sync":"Synced"'* && $s == *'"health":"Healthy"'* ]] || return 1
  done
}
# Twice in a row, half a second apart: a tier just promoted can read Healthy for a moment before
# the watch shows its rollout.
calm=0
for _ in $(seq 360); do
  if settled; then calm=$((calm + 1)); else calm=0; fi
  if ((calm >= 2)); then break; fi
  sleep 0.5
done

step "What gitopsd applied (label gitopsd.io/tier)"
kubectl get deployments,services,configmaps,featureflags -A -l gitopsd.io/tier -L gitopsd.io/tier
step "The tiers (gitopsd status)"
"$bin" status --server "http://127.0.0.1:$port"
for t in "${tiers[@]}"; do
  s=$(curl -fsS "http://127.0.0.1:$port/api/v1/tiers/$t")
  if [[ $s == *'"sync":"Blocked"'* ]]; then
    why=$(grep -o '"lastError":"[^"]*"' <<<"$s" | sed -e 's/^"lastError":"//' -e 's/"$//')
    echo "$t is held back: $why"
  fi
done
cat <<MSG

gitopsd is running (pid $(cat "$pidfile")) and reconciling the three tiers of
$work/config-repo every minute, and at once on any change in the cluster.
  Dashboard:       http://127.0.0.1:$port/
  Status:          $bin status --server http://127.0.0.1:$port   (JSON: /api/v1/tiers)
  Sync now:        curl -X POST -H "Authorization: Bearer \$(cat $work/api-token)" http://127.0.0.1:$port/api/v1/tiers/experimental/sync
  Its log:         $log
Try it:
  export KUBECONFIG=$kubeconfig
  $(scripts/cluster.sh env | tail -n 1)
  kubectl -n shop-exp set image deployment/api api=evil:1    # reverted within seconds
  kubectl -n shop-ops set env deployment/api HTTP_MAX_BODY_BYTES=5   # operational only alerts
Stop everything with:
  scripts/quickstart.sh stop
MSG
