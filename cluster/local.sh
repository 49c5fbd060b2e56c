#!/usr/bin/env bash
# A multi-node Ray cluster on this machine (one head + K worker `ray start` processes, token auth on) and an MLflow
# tracking server on 127.0.0.1 with a sqlite store -- the smallest honest stand-in for a team's cluster.
#
#   eval "$(cluster/local.sh up [--workers K] [--cpus-per-worker C])"   # prints only `export` lines on stdout
#   cluster/local.sh status                                             # what runs, where
#   eval "$(cluster/local.sh down [--purge])"                           # prints only `unset` lines on stdout
#
# Everything lives in one private folder (mode 0700, owned by you, not a symlink: anything else is refused), given by
# --dir or $SVGAP_CLUSTER_DIR, else $XDG_RUNTIME_DIR/svgap-cluster, else a `mktemp -d` that `up` records in
# ~/.local/state/svgap/cluster-dir for `status` and `down`: Ray's temp dirs (r/ for the
# head, w<i>/ for worker i), the auth token (0600), pid files (pids/), logs (logs/) and the MLflow store (mlflow/). Every
# port is picked free at `up`; object stores are small (--object-store-mb, default 250 per node). Worker i (1..K) advertises the custom resource gen_node
# (odd i) or train_node (even i), so pools can ask for `resources.<role>.custom: {gen_node: 1}`.
#
# `down` stops exactly what `up` started: every process of yours that carries this cluster's marker variable
# (SVGAP_LOCAL_CLUSTER_MEMBER=<folder>) -- the processes `up` launched (pids/), Ray's own children, the job drivers,
# and the ray.util.client.server processes re-parented to PID 1. A pid in pids/ whose process lacks the marker is
# never signalled. Never `ray stop` (it would end every Ray cluster on the machine).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
DIR="${SVGAP_CLUSTER_DIR:-}"
RECORD="${XDG_STATE_HOME:-${HOME:-/nonexistent}/.local/state}/svgap/cluster-dir"
WORKERS=2
CPUS=1
HEAD_CPUS=""
STORE_MB=250
PURGE=0

die() { echo "cluster/local.sh: error: $*" >&2; exit 2; }
say() { echo "cluster/local.sh: $*" >&2; }

usage() {
  echo "usage: cluster/local.sh up|down|status [--workers K] [--cpus-per-worker C] [--head-cpus C] [--object-store-mb MB] [--dir DIR] [--purge]" >&2
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

CMD="${1:-}"
case "$CMD" in up|down|status) shift ;; *) usage ;; esac
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="${2:-}"; shift 2 ;;
    --cpus-per-worker) CPUS="${2:-}"; shift 2 ;;
    --head-cpus) HEAD_CPUS="${2:-}"; shift 2 ;;
    --object-store-mb) STORE_MB="${2:-}"; shift 2 ;;
    --dir) DIR="${2:-}"; shift 2 ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown option $1 (see cluster/local.sh --help)" ;;
  esac
done
[[ "$WORKERS" =~ ^[0-9]+$ ]] || die "--workers: expected a whole number, got '$WORKERS'"
[[ "$CPUS" =~ ^[0-9]+$ ]] && [ "$CPUS" -ge 1 ] || die "--cpus-per-worker: expected a whole number >= 1, got '$CPUS'"
[[ "$STORE_MB" =~ ^[0-9]+$ ]] && [ "$STORE_MB" -ge 80 ] || die "--object-store-mb: expected a number >= 80 (Ray's minimum is 75 MB)"
# the head runs the job drivers; with workers it holds no CPU of its own, so the pools land on the workers
[ -n "$HEAD_CPUS" ] || { [ "$WORKERS" -gt 0 ] && HEAD_CPUS=0 || HEAD_CPUS="$CPUS"; }
[[ "$HEAD_CPUS" =~ ^[0-9]+$ ]] || die "--head-cpus: expected a whole number, got '$HEAD_CPUS'"

# the folder must be private: its pid files say what `down` signals and its token admits jobs. A path another user
# could pre-create or plant a symlink at is refused, never followed.
private_dir() {  # DIR exists, is a directory (not a symlink), is ours and nobody else can write or read it
  local d="$1" owner mode
  [ ! -L "$d" ] || die "cluster folder $d is a symbolic link; refusing it (pass --dir with a folder of your own)"
  [ -d "$d" ] || die "cluster folder $d is not a directory"
  read -r owner mode < <(stat -c '%u %a' "$d") || die "cannot stat the cluster folder $d"
  [ "$owner" = "$(id -u)" ] || die "cluster folder $d belongs to uid $owner, not you; refusing it (another user may have made it)"
  [ $((8#$mode & 8#022)) -eq 0 ] || die "cluster folder $d is writable by other users (mode $mode); refusing it (its pid files and token may have been replaced)"
  [ $((8#$mode & 8#077)) -eq 0 ] || chmod 700 "$d" || die "cannot make $d private (chmod 700)"
}

runtime_dir() {  # $XDG_RUNTIME_DIR when it is a private folder of ours (it is, on systemd machines)
  local r="${XDG_RUNTIME_DIR:-}" owner mode
  [ -n "$r" ] && [ ! -L "$r" ] && [ -d "$r" ] || return 1
  read -r owner mode < <(stat -c '%u %a' "$r") || return 1
  [ "$owner" = "$(id -u)" ] && [ "$mode" = 700 ] && [ "${#r}" -le 22 ] && echo "$r/svgap-cluster"
}

if [ -z "$DIR" ]; then
  if DIR="$(runtime_dir)"; then :
  elif [ -f "$RECORD" ] && [ ! -L "$RECORD" ]; then DIR="$(cat "$RECORD")"
  elif [ "$CMD" = up ]; then
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/svgap-XXXXXXXX")" || die "cannot make a private cluster folder (mktemp -d)"
    mkdir -p "$(dirname "$RECORD")" && echo "$DIR" >"$RECORD" || die "cannot record the cluster folder in $RECORD"
  elif [ "$CMD" = status ]; then say "not up (no cluster folder recorded in $RECORD)"; exit 3
  else die "no cluster folder (not up? none recorded in $RECORD; set SVGAP_CLUSTER_DIR or pass --dir)"; fi
fi
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
if [ "$CMD" = up ]; then
  # Ray's unix sockets live under <temp dir>/session_<date>_<pid>/sockets/; a socket path must stay under 108 bytes
  [ "${#DIR}" -le 36 ] || die "cluster folder $DIR is too long for Ray's socket paths (keep it under ~36 characters, e.g. SVGAP_CLUSTER_DIR=/tmp/svc)"
  [ -e "$DIR" ] || [ -L "$DIR" ] || mkdir -m 700 "$DIR" || die "cannot create the cluster folder $DIR"
fi
if [ -e "$DIR" ] || [ -L "$DIR" ]; then private_dir "$DIR"; fi
RAYTMP="$DIR/r"
MARK="SVGAP_LOCAL_CLUSTER_MEMBER=$DIR"

if [ -n "${SVGAP_PYTHON:-}" ]; then PY="$SVGAP_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3 || true)"; fi
[ -n "$PY" ] && [ -x "$PY" ] || die "no python found (set SVGAP_PYTHON to the interpreter that has ray and mlflow)"
BIN="$(dirname "$PY")"

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# pids of processes (of this user) carrying this cluster's marker in their environment: the only ones signalled
members() {
  "$PY" - "$DIR" <<'EOF'
import os, sys
d = sys.argv[1]
mark = ("SVGAP_LOCAL_CLUSTER_MEMBER=" + d).encode()
me, uid = os.getpid(), os.getuid()
skip = {me, os.getppid()}
pids = set()
# the pid files name no process by themselves: a pid is ours only when the process is this user's and its own
# environment carries this cluster's marker (a recycled pid or a planted file names someone else's process)
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) in skip:
        continue
    try:
        if os.stat(f"/proc/{p}").st_uid != uid:
            continue
        env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
    except OSError:
        continue
    if mark in env:
        pids.add(int(p))
alive = []
for p in sorted(pids - skip):
    try:
        os.kill(p, 0)
        state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
        if state != "Z":
            alive.append(str(p))
    except OSError:
        pass
print(" ".join(alive))
EOF
}

free_ports() {  # N ports free now on all interfaces (Ray listens on all of them)
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

# wait until URL answers (with the token when given); fail early if pid died
wait_http() {
  local url="$1" pid="$2" what="$3" log="$4" secs="${5:-90}"
  "$PY" - "$url" "$pid" "$secs" "$DIR/auth_token" <<'EOF' || { say "$what did not come up; last lines of $log:"; tail -n 15 "$log" >&2; return 1; }
import os, sys, time, urllib.request
url, pid, secs, tok = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
headers = {"Authorization": "Bearer " + open(tok).read().strip()} if os.path.exists(tok) else {}
end = time.time() + secs
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.3)
sys.exit(1)
EOF
}

wait_nodes() {  # until the cluster lists `want` alive nodes; fails early when a worker's `ray start` died
  "$PY" - "$1" "$2" "$DIR/auth_token" "$DIR/pids" <<'EOF'
import json, os, sys, time, urllib.request
url, want, tok, pid_dir = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().strip(), sys.argv[4]
workers = [int(open(os.path.join(pid_dir, f)).read()) for f in os.listdir(pid_dir) if f.startswith("worker")]
end = time.time() + 240  # a loaded machine is slow: Ray's own node start-up gives up after its own timeout
while time.time() < end:
    for pid in workers:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(1)
    try:
        req = urllib.request.Request(url + "/nodes?view=summary", headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=5) as r:
            nodes = json.load(r)["data"]["summary"]
        if sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE") >= want:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF
}

launch() {  # name, log, ray temp dir, command...: start detached with the cluster marker, record the pid
  local name="$1" log="$2" tmp="$3"; shift 3
  env "$MARK" RAY_TMPDIR="$tmp" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$DIR/auth_token" \
      PATH="$BIN:$PATH" RAY_USAGE_STATS_ENABLED=0 RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 \
      setsid "$@" </dev/null >"$log" 2>&1 &
  echo $! >"$DIR/pids/$name.pid"
}

stop_all() {
  local pids
  pids="$(members)"
  [ -n "$pids" ] || { rm -f "$DIR"/pids/*.pid; return 0; }
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 20); do  # up to ~10 s for Ray's graceful shutdown (processes started meanwhile get it too)
    sleep 0.5
    pids="$(members)"
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
  done
  # SIGKILL what is left; a killed process takes a moment to go (longer on a loaded machine), and a raylet may have
  # forked a worker just before it died: look again a few times
  for _ in $(seq 1 10); do
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 1
    pids="$(members)"
  done
  rm -f "$DIR"/pids/*.pid
  [ -z "$pids" ] || { say "still running after SIGKILL: $pids"; return 1; }
}

start_worker() {  # i, gcs port: worker i on its 7 ports from WORKER_PORTS, its own temp dir and custom resource
  local i="$1" gcs="$2" kind o=$((7 * ($1 - 1)))
  local p=("${WORKER_PORTS[@]:$o:7}")
  if [ $((i % 2)) -eq 1 ]; then kind=gen_node; else kind=train_node; fi
  # its own temp dir: nodes sharing one would race for the same socket names (raylet.1, plasma_store.1)
  mkdir -p "$DIR/w$i"
  launch "worker$i" "$DIR/logs/worker$i.log" "$DIR/w$i" "$BIN/ray" start --block --disable-usage-stats \
    --address "127.0.0.1:$gcs" --node-ip-address 127.0.0.1 --node-manager-port "${p[0]}" --object-manager-port "${p[1]}" \
    --dashboard-agent-listen-port "${p[2]}" --dashboard-agent-grpc-port "${p[3]}" --metrics-export-port "${p[4]}" \
    --runtime-env-agent-port "${p[5]}" --ray-client-server-port "${p[6]}" --num-cpus "$CPUS" \
    --resources "{\"$kind\": 4}" --object-store-memory $((STORE_MB * 1000000)) --temp-dir "$DIR/w$i"
}

up() {
  mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/mlflow" "$RAYTMP"
  local t0=$SECONDS running
  running="$(members)"
  [ -z "$running" ] || die "a cluster from $DIR is already up (pids $running); run cluster/local.sh down first"
  "$PY" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('ray') and u.find_spec('mlflow')))" \
    || die "$PY lacks ray or mlflow (set SVGAP_PYTHON)"
  [ -x "$BIN/ray" ] || die "no ray command next to $PY"
  [ -x "$BIN/mlflow" ] || die "no mlflow command next to $PY"
  if [ ! -s "$DIR/auth_token" ]; then
    (umask 077; "$PY" -c "import secrets; print(secrets.token_hex(32))" >"$DIR/auth_token")
  fi
  chmod 600 "$DIR/auth_token"
  # head: gcs, dashboard, client server, node manager, object manager, agent listen+grpc, metrics, runtime env agent
  # shellcheck disable=SC2046
  set -- $(free_ports $((10 + 7 * WORKERS)))
  local gcs=$1 dash=$2 client=$3 nm=$4 om=$5 al=$6 ag=$7 me=$8 rea=$9 mlp=${10}
  shift 10

  trap 'say "up failed; stopping what was started"; stop_all >/dev/null 2>&1 || true' ERR
  launch head "$DIR/logs/head.log" "$RAYTMP" "$BIN/ray" start --head --block --disable-usage-stats \
    --node-ip-address 127.0.0.1 --port "$gcs" --dashboard-host 127.0.0.1 --dashboard-port "$dash" \
    --ray-client-server-port "$client" --node-manager-port "$nm" --object-manager-port "$om" \
    --dashboard-agent-listen-port "$al" --dashboard-agent-grpc-port "$ag" --metrics-export-port "$me" \
    --runtime-env-agent-port "$rea" --num-cpus "$HEAD_CPUS" --object-store-memory $((STORE_MB * 1000000)) \
    --temp-dir "$RAYTMP"
  launch mlflow "$DIR/logs/mlflow.log" "$RAYTMP" "$BIN/mlflow" server --host 127.0.0.1 --port "$mlp" --workers 1 \
    --backend-store-uri "sqlite:///$DIR/mlflow/mlflow.db" --artifacts-destination "$DIR/mlflow/artifacts"
  wait_http "http://127.0.0.1:$dash/api/version" "$(cat "$DIR/pids/head.pid")" "Ray head" "$DIR/logs/head.log"
  say "head up on 127.0.0.1:$gcs (dashboard :$dash) in $((SECONDS - t0))s"
  WORKER_PORTS=("$@")
  local i
  for i in $(seq 1 "$WORKERS"); do start_worker "$i" "$gcs"; done
  if [ "$WORKERS" -gt 0 ]; then
    # `ray start` gives its raylet 30 s to register with the GCS; on a loaded machine that can run out: a worker
    # whose `ray start` gave up is started again (twice at most), on the same ports
    local try
    for try in 1 2 3; do
      if wait_nodes "http://127.0.0.1:$dash" $((WORKERS + 1)); then break; fi
      [ "$try" -lt 3 ] || { say "workers did not join; see $DIR/logs/worker*.log"; false; }
      for i in $(seq 1 "$WORKERS"); do
        alive "$(cat "$DIR/pids/worker$i.pid")" || { say "worker $i gave up starting; starting it again"; start_worker "$i" "$gcs"; }
      done
    done
    say "$WORKERS worker node(s) joined ($((SECONDS - t0))s)"
  fi
  wait_http "http://127.0.0.1:$mlp/health" "$(cat "$DIR/pids/mlflow.pid")" "MLflow server" "$DIR/logs/mlflow.log"
  trap - ERR
  cat >"$DIR/env" <<EOF
export RAY_ADDRESS=http://127.0.0.1:$dash
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$DIR/auth_token
export MLFLOW_TRACKING_URI=http://127.0.0.1:$mlp
export SVGAP_CLUSTER_DIR=$DIR
EOF
  say "up in $((SECONDS - t0))s: head + $WORKERS worker(s), MLflow at http://127.0.0.1:$mlp; folder $DIR"
  cat "$DIR/env"
}

down() {
  [ -d "$DIR" ] || die "no cluster folder $DIR (set SVGAP_CLUSTER_DIR or pass --dir)"
  local pids n
  pids="$(members)"
  n=$(echo "$pids" | wc -w)
  stop_all
  say "stopped $n process(es) of $DIR"
  rm -f "$DIR/env"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$DIR"; say "removed $DIR"
    [ "$(cat "$RECORD" 2>/dev/null)" != "$DIR" ] || rm -f "$RECORD"
  fi
  echo "unset RAY_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH MLFLOW_TRACKING_URI SVGAP_CLUSTER_DIR"
}

status() {
  [ -d "$DIR/pids" ] || { say "not up ($DIR has no pids/)"; exit 3; }
  local f name pid bad=0
  for f in "$DIR"/pids/*.pid; do
    [ -e "$f" ] || { say "not up (no pid files in $DIR/pids)"; exit 3; }
    name="$(basename "$f" .pid)"; pid="$(cat "$f")"
    if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: NOT running (pid $pid)"; bad=1; fi
  done
  echo "processes of this cluster: $(members | wc -w)"
  [ -f "$DIR/env" ] && sed 's/^export /  /' "$DIR/env"
  return $bad
}

case "$CMD" in
  up) up ;;
  down) down ;;
  status) status ;;
esac
