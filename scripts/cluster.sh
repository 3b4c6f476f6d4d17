#!/usr/bin/env bash
# A local Kubernetes control plane on loopback, for tests, benchmarks and the quickstart:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes whose Pods
# become Ready without a container runtime), built from source by build-control-plane.sh.
#
#   scripts/cluster.sh up       build if needed, start, wait until ready, register kwok nodes
#                               (reuses a cluster that is already up and healthy; restarts
#                               only kwok if scripts/kwok-stages changed since it started)
#   scripts/cluster.sh down     stop every process it started, by process id
#   scripts/cluster.sh stop COMPONENT [--kill]   stop one component of a running cluster (by
#                               its recorded process id, as `down` does; --kill: SIGKILL at
#                               once, a crash), e.g. to test an API server outage
#   scripts/cluster.sh start COMPONENT   start it again with the arguments `up` gives it, and
#                               wait until it is healthy (etcd, kube-apiserver: ready to serve)
#   scripts/cluster.sh env      print shell exports (KUBECONFIG, PATH with kubectl)
#   scripts/cluster.sh status   say what runs, with process ids and ports
#   scripts/cluster.sh logs [COMPONENT]   show the end of a component's log
#
# Settings (environment): GITOPSD_CACHE (default ~/.cache/gitopsd), GITOPSD_CLUSTER_DIR
# (default $GITOPSD_CACHE/cluster), GITOPSD_CLUSTER_PORT (first of six loopback ports,
# default 16440), GITOPSD_KWOK_NODES (default 3).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/versions.env"
eval "$("$here/build-control-plane.sh" --print-bin-dirs)"

CACHE=${GITOPSD_CACHE:-$HOME/.cache/gitopsd}
DIR=${GITOPSD_CLUSTER_DIR:-$CACHE/cluster}
PORT=${GITOPSD_CLUSTER_PORT:-16440}
NODES=${GITOPSD_KWOK_NODES:-3}

APISERVER_PORT=$PORT
ETCD_CLIENT_PORT=$((PORT + 1))
ETCD_PEER_PORT=$((PORT + 2))
KCM_PORT=$((PORT + 3))
SCHEDULER_PORT=$((PORT + 4))
KWOK_PORT=$((PORT + 5))

PKI=$DIR/pki
LOGS=$DIR/logs
PIDS=$DIR/pids
KUBECONFIG_FILE=$DIR/kubeconfig
SERVER=https://127.0.0.1:$APISERVER_PORT
# Started in this order, stopped in the reverse one.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
# Alive and still the component: a pid file left by a killed session may name a process id
# that the system has since given to something else, which must never be signalled.
alive() {
  local p
  p=$(pid_of "$1")
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "/$1 "
}

curl_api() {
  curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"
}

healthy() {
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  [[ $(curl_api "$SERVER/readyz" 2>/dev/null) == ok ]]
}

# ---- certificates and keys, made once and kept, so the kubeconfig stays valid across restarts.
gen_pki() {
  [[ -f $PKI/.complete ]] && return 0
  log "creating certificates and service-account keys in $PKI"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=gitopsd-local-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() { # name subject [extensions]
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -out "$1.crt" ${3:+-extfile <(printf '%s' "$3")} 2>/dev/null
      rm -f "$1.csr"
    }
    sign apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
    local client="extendedKeyUsage=clientAuth"
    sign admin "/O=system:masters/CN=gitopsd-local-admin" "$client"
    sign kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    sign kube-scheduler "/CN=system:kube-scheduler" "$client"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "certificate generation failed (openssl); remove $PKI and retry"
  touch "$PKI/.complete"
}

write_kubeconfig() { # file user
  local ca crt key
  ca=$(base64 -w0 <"$PKI/ca.crt")
  crt=$(base64 -w0 <"$PKI/$2.crt")
  key=$(base64 -w0 <"$PKI/$2.key")
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gitopsd-local
  cluster: {server: "$SERVER", certificate-authority-data: "$ca"}
users:
- name: $2
  user: {client-certificate-data: "$crt", client-key-data: "$key"}
contexts:
- name: gitopsd-local
  context: {cluster: gitopsd-local, user: $2}
current-context: gitopsd-local
EOF
  chmod 600 "$1"
}

start() { # name binary args...
  local name=$1 bin=$2
  shift 2
  [[ -x $bin ]] || die "$bin is missing; run scripts/build-control-plane.sh"
  # setsid: the component outlives the shell that started it (tests reuse a running cluster),
  # and `down` stops exactly the recorded process id.
  # 8>&-: the components must not inherit (and so hold forever) the lock of cluster.sh.
  setsid "$bin" "$@" >"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
  local pid=$!
  echo "$pid" >"$PIDS/$name.pid"
  # Until the background shell has exec'd the binary, /proc/PID/cmdline is this script's, and
  # `alive` (which checks it, to never trust a recycled pid) would call a starting component
  # dead. On a loaded machine that window outlasts a refused curl: wait for the exec.
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0 # exited: wait_for reports it with its log
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "/$name " && return 0
    sleep 0.05
  done
}

wait_for() { # what seconds command...
  local what=$1 deadline=$((SECONDS + $2)) name=$3
  shift 3
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      log "ERROR: $name exited while waiting for $what; last lines of $LOGS/$name.log:"
      tail -n 25 "$LOGS/$name.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "ERROR: timed out waiting for $what; last lines of $LOGS/$name.log:"
      tail -n 25 "$LOGS/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

register_nodes() {
  local i manifest=""
  for ((i = 0; i < NODES; i++)); do
    manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {node.alpha.kubernetes.io/ttl: \"0\", kwok.x-k8s.io/node: fake}
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: \"\"
    topology.kubernetes.io/zone: zone-$((i % 3))
status:
  allocatable: {cpu: \"32\", memory: 256Gi, pods: \"110\"}
  capacity: {cpu: \"32\", memory: 256Gi, pods: \"110\"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
"
  done
  kubectl_ apply --server-side --field-manager=gitopsd-cluster-sh -f - <<<"$manifest" >/dev/null ||
    die "could not register the kwok nodes"
  kubectl_ wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null ||
    die "kwok nodes did not become Ready; see $LOGS/kwok.log"
}

# ---- kwok and its Stages. The release's fast stages (copied by build-control-plane.sh) with
# ours from scripts/kwok-stages: a file there replaces the release's file of the same name
# (pod-ready.yaml, which must not match the Pods that pod-unready.yaml keeps unready) or adds
# a stage. kwok reads its stages only when it starts.
kwok_config() {
  local f
  for f in "$KWOK_BIN"/stages/*.yaml; do
    [[ -f $here/kwok-stages/$(basename "$f") ]] && continue
    echo "---"; cat "$f"
  done
  for f in "$here"/kwok-stages/*.yaml; do echo "---"; cat "$f"; done
}

start_kwok() {
  log "starting kwok $KWOK_VERSION"
  kwok_config >"$DIR/kwok.yaml"
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" \
    --config "$DIR/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-label-selector type=kwok \
    --server-address "127.0.0.1:$KWOK_PORT" \
    --cidr 10.244.0.0/16 --node-ip 127.0.0.1 --node-lease-duration-seconds 40
}

# ---- each component, started with the same arguments by `up` and by `start COMPONENT`.
start_etcd() {
  log "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_CLIENT_PORT"
  start etcd "$ETCD_BIN/etcd" --name gitopsd-local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "gitopsd-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
}

start_apiserver() {
  log "starting kube-apiserver $KUBERNETES_VERSION on $SERVER"
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --service-cluster-ip-range 10.96.0.0/16 --profiling=false
}

start_kcm() {
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true
}

start_scheduler() {
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
}

# Starts one component and, for etcd and kube-apiserver (what the others need), waits until it
# serves.
start_component() { # name
  case $1 in
    etcd)
      start_etcd
      wait_for "etcd health" 30 etcd curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
      ;;
    kube-apiserver)
      start_apiserver
      wait_for "kube-apiserver /readyz" 90 kube-apiserver \
        bash -c "[[ \$(curl -sS --max-time 5 --cacert '$PKI/ca.crt' --cert '$PKI/admin.crt' --key '$PKI/admin.key' '$SERVER/readyz') == ok ]]"
      ;;
    kube-controller-manager) start_kcm ;;
    kube-scheduler) start_scheduler ;;
    kwok) start_kwok ;;
    *) die "unknown component $1 (one of: ${COMPONENTS[*]})" ;;
  esac
}

# A cluster started with other stages (an older checkout of this script) gets the current ones:
# $DIR/kwok.yaml is the config the running kwok read. Only kwok restarts: it keeps no state of
# its own (it re-lists nodes and Pods), while a whole restart would wipe etcd, and with it the
# namespaces of every test using the cluster at that moment. Pods that are already Ready stay
# Ready; only Pods created from now on go through the new stages.
refresh_kwok_stages() {
  kwok_config | cmp -s - "$DIR/kwok.yaml" && return 0
  log "the kwok stages changed since kwok started ($DIR/kwok.yaml); restarting kwok only"
  stop_one kwok
  start_kwok
  wait_for "kwok /healthz" 30 kwok curl -sf "http://127.0.0.1:$KWOK_PORT/healthz"
  kubectl_ wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null ||
    die "kwok nodes are not Ready after the kwok restart; see $LOGS/kwok.log"
}

cmd_up() {
  "$here/install-deps.sh"
  mkdir -p "$DIR"
  exec 8>"$DIR/.lock"
  flock 8 # two test processes starting at once: the second waits and reuses the first's cluster
  if healthy; then
    refresh_kwok_stages
    log "already up at $SERVER"
    echo "$KUBECONFIG_FILE"
    return 0
  fi
  # Half a cluster (a crash, a killed session) is restarted whole.
  stop_all quiet
  "$here/build-control-plane.sh"
  local t0=$SECONDS
  for p in $APISERVER_PORT $ETCD_CLIENT_PORT $ETCD_PEER_PORT $KCM_PORT $SCHEDULER_PORT $KWOK_PORT; do
    port_free "$p" || die "port $p on 127.0.0.1 is taken by another process ($(ss -Htlnp "sport = :$p" | head -1)); stop it or set GITOPSD_CLUSTER_PORT"
  done
  gen_pki
  mkdir -p "$LOGS" "$PIDS"
  rm -rf "$DIR/etcd" # every start is a fresh, empty cluster
  write_kubeconfig "$KUBECONFIG_FILE" admin
  write_kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler

  start_component etcd
  start_component kube-apiserver
  log "starting kube-controller-manager and kube-scheduler"
  start_kcm
  start_scheduler
  start_kwok
  wait_for "kube-controller-manager /healthz" 60 kube-controller-manager \
    curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for "kube-scheduler /healthz" 60 kube-scheduler \
    curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  # The default ServiceAccount appears once the controllers run; Pods cannot be created before.
  wait_for "the default ServiceAccount" 60 kube-controller-manager \
    kubectl_ get serviceaccount default -n default

  log "registering $NODES kwok nodes"
  register_nodes
  log "up in $((SECONDS - t0))s: Kubernetes $KUBERNETES_VERSION at $SERVER"
  echo "$KUBECONFIG_FILE"
}

stop_one() { # name [quiet]
  local name=$1 pid
  pid=$(pid_of "$name")
  [[ -n $pid ]] || return 0
  if alive "$name"; then
    [[ ${2:-} == quiet ]] || log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

stop_all() { # [quiet]
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_one "${COMPONENTS[$i]}" "${1:-}"
  done
}

cmd_down() {
  mkdir -p "$DIR"
  exec 8>"$DIR/.lock"
  flock 8
  stop_all
  local p left=()
  for p in $APISERVER_PORT $ETCD_CLIENT_PORT $ETCD_PEER_PORT $KCM_PORT $SCHEDULER_PORT $KWOK_PORT; do
    for _ in $(seq 1 25); do port_free "$p" && break; sleep 0.2; done
    port_free "$p" || left+=("$p")
  done
  ((${#left[@]} == 0)) || die "ports ${left[*]} are still in use after stopping the cluster"
  rm -rf "$DIR/etcd"
  log "down"
}

# One component of a running cluster: stopped (tests of an API server outage) and started again.
# Neither takes $DIR/.lock: the caller holds it (flock) from stop to start, so that an `up`
# meanwhile waits instead of taking the half-stopped cluster for a crashed one and restarting it
# whole (which wipes etcd).
cmd_stop() { # component [--kill]
  [[ -n ${1:-} ]] || die "usage: cluster.sh stop COMPONENT [--kill] (one of: ${COMPONENTS[*]})"
  [[ " ${COMPONENTS[*]} " == *" $1 "* ]] || die "unknown component $1 (one of: ${COMPONENTS[*]})"
  if [[ ${2:-} == --kill ]] && alive "$1"; then
    local pid
    pid=$(pid_of "$1")
    log "killing $1 (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  stop_one "$1"
}

cmd_start() { # component
  [[ -n ${1:-} ]] || die "usage: cluster.sh start COMPONENT (one of: ${COMPONENTS[*]})"
  [[ -f $PKI/.complete ]] || die "no cluster in $DIR; run \`cluster.sh up\` first"
  if alive "$1"; then
    log "$1 already runs (pid $(pid_of "$1"))"
    return 0
  fi
  start_component "$1"
}

cmd_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export PATH=$K8S_BIN:\$PATH"
}

cmd_status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
  if healthy; then echo "cluster: ready at $SERVER (kubeconfig: $KUBECONFIG_FILE)"; else echo "cluster: not ready"; return 1; fi
}

cmd_logs() {
  local c
  for c in "${@:-${COMPONENTS[@]}}"; do
    echo "==> $LOGS/$c.log <=="
    tail -n 40 "$LOGS/$c.log" 2>/dev/null || echo "(no log)"
  done
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  stop) shift; cmd_stop "$@" ;;
  start) shift; cmd_start "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  *)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    [[ ${1:-} == -h || ${1:-} == --help ]] || exit 2
    ;;
esac
