#!/usr/bin/env bash
# A two-node Ray cluster on one host, to try the cluster mode before Kubernetes: a Ray head, one Ray
# worker (its own temp dir and resources), PostgreSQL (the local server) for the metadata, a Milvus server
# (`milvus-server` of the `milvus` PyPI package, in the test extra) for the face vectors, and the Serve
# application of configs/serve.cluster.yaml deployed as written.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/trial/cluster.sh COMMAND [--dry-run] [--root DIR]...

commands:
  up       create the database, start Milvus, the Ray head and worker, `serve deploy` the cluster config,
           and print an admin key (once) and how to reach everything
  down     `serve shutdown`, stop both Ray nodes and Milvus (only this trial's processes)
  worker   start the Ray worker node again (after it died: a node lost and replaced)
  restart  start the whole Ray cluster and the Serve application again (after the head was lost: with no
           GCS fault tolerance its workers go with it); PostgreSQL and Milvus keep running
  status   the trial's processes and `ray status`
  env      the exports that point immray's commands at the trial cluster

options:
  --dry-run   print the commands `up`/`down` would run, run nothing
  --root DIR  a folder the cluster may index (IMMRAY_ALLOWED_ROOTS; repeatable; default: the folders `up`
              was given, else $HOME/Pictures)

settings (environment, with their defaults):
  TRIAL_DIR=/tmp/immray-trial       Ray temp dirs, Milvus data, logs, pid files
  VENV=<repo>/.venv                 the Python environment with immray and the test extra (milvus)
  IMMRAY_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/immray_trial (created when missing)
  TRIAL_RAY_PORT=6380               the head's GCS port (never 6379, which Redis may own)
  TRIAL_DASHBOARD_PORT=8265         the Ray dashboard and job API
  TRIAL_MILVUS=server               server: `milvus-server` (standalone, embedded etcd); lite: `milvus-lite
                                    server`; or set IMMRAY_MILVUS_URI to use a Milvus of your own
  TRIAL_MILVUS_PORT=19530           Milvus' port (and the next 9 for the server's inner services)
  TRIAL_HEAD_CPUS=2                 logical CPUs of the head (the ingress replicas, dataset actors)
  TRIAL_WORKER_CPUS=16              logical CPUs of the worker (Ray's bookkeeping, not cores: serve.cluster.yaml
                                    asks 4 per analysis replica and backfill actor, 1 per ingress replica)
  TRIAL_WORKER_GPUS=2               logical GPUs of the worker: one analysis replica and one backfill actor;
                                    with no CUDA device they run the models on the CPU
EOF
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TRIAL_DIR="${TRIAL_DIR:-/tmp/immray-trial}"
VENV="${VENV:-$REPO/.venv}"
DATABASE_URL="${IMMRAY_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/immray_trial}"
RAY_PORT="${TRIAL_RAY_PORT:-6380}"
DASHBOARD_PORT="${TRIAL_DASHBOARD_PORT:-8265}"
MILVUS_PORT="${TRIAL_MILVUS_PORT:-19530}"
HEAD_CPUS="${TRIAL_HEAD_CPUS:-2}"
WORKER_CPUS="${TRIAL_WORKER_CPUS:-16}"
WORKER_GPUS="${TRIAL_WORKER_GPUS:-2}"
CONFIG="$REPO/configs/serve.cluster.yaml"
DRY_RUN=0
ROOTS=()

command_name="${1:-}"
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --root) [ $# -ge 2 ] || { echo "--root needs a folder" >&2; exit 2; }; ROOTS+=("$(realpath -m "$2")"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
# Without --root: the folders `up` was given (so `worker` and `env` agree with the running nodes).
if [ ${#ROOTS[@]} -eq 0 ] && [ "$command_name" != up ] && [ -f "$TRIAL_DIR/roots" ]; then
  mapfile -t ROOTS <"$TRIAL_DIR/roots"
fi
[ ${#ROOTS[@]} -gt 0 ] || ROOTS=("$HOME/Pictures")
if [ "$RAY_PORT" = 6379 ]; then
  echo "TRIAL_RAY_PORT must not be 6379 (Redis' port)" >&2
  exit 2
fi

roots_json() {
  local out="[" sep=""
  for root in "${ROOTS[@]}"; do out+="$sep\"$root\""; sep=","; done
  echo "$out]"
}

# Milvus: the `milvus` package's standalone server (TRIAL_MILVUS=server), `milvus-lite server` (lite:
# lighter, and enough for one host), or a server of your own (IMMRAY_MILVUS_URI set: nothing started).
if [ -n "${IMMRAY_MILVUS_URI:-}" ]; then
  MILVUS_KIND=external MILVUS_URI="$IMMRAY_MILVUS_URI"
else
  MILVUS_KIND="${TRIAL_MILVUS:-server}" MILVUS_URI="http://127.0.0.1:$MILVUS_PORT"
fi
DASHBOARD="http://127.0.0.1:$DASHBOARD_PORT"
# What every Ray process of the trial inherits (KubeRay sets the same from Secrets).
NODE_ENV=(
  "IMMRAY_DATABASE_URL=$DATABASE_URL"
  "IMMRAY_MILVUS_URI=$MILVUS_URI"
  "IMMRAY_ALLOWED_ROOTS=$(roots_json)"
  "IMMRAY_DATA_DIR=$TRIAL_DIR/data"
  "PATH=$VENV/bin:$PATH"
  # Ray's token authentication (a head turns it on): every node and client reads ~/.ray/auth_token
  "RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}"
)

run() {  # print (shell-quoted), then run unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$DRY_RUN" = 1 ] || "$@"
}

run_env() {  # a command with the nodes' environment
  run env "${NODE_ENV[@]}" "$@"
}

milvus_up() {
  local data="$TRIAL_DIR/milvus" command=() port=$MILVUS_PORT
  case "$MILVUS_KIND" in
    external) echo "Milvus: $MILVUS_URI (IMMRAY_MILVUS_URI, started elsewhere)"; return ;;
    lite) command=("$VENV/bin/milvus-lite" server --data-dir "$data/lite.db" --host 127.0.0.1 --port "$MILVUS_PORT") ;;
    server)
      command=("$VENV/bin/milvus-server" --data "$data")
      for name in proxy-port etcd-port root-coord-port proxy-internal-port query-coord-port query-node-port \
          index-coord-port index-node-port data-coord-port data-node-port; do
        command+=("--$name" "$port"); port=$((port + 1))
      done ;;
    *) echo "TRIAL_MILVUS must be server or lite, not $MILVUS_KIND" >&2; exit 2 ;;
  esac
  run mkdir -p "$data"
  printf '+ setsid'; printf ' %q' "${command[@]}"; printf ' > %q &\n' "$TRIAL_DIR/milvus.log"
  [ "$DRY_RUN" = 1 ] && return
  setsid "${command[@]}" >"$TRIAL_DIR/milvus.log" 2>&1 &
  echo $! >"$TRIAL_DIR/milvus.pid"
  local deadline=$((SECONDS + 240))
  while [ $SECONDS -lt $deadline ]; do
    if "$VENV/bin/python" - "$MILVUS_URI" <<'PY' 2>/dev/null; then return; fi
import sys
from pymilvus import MilvusClient
MilvusClient(sys.argv[1], timeout=3).list_collections()
PY
    kill -0 "$(cat "$TRIAL_DIR/milvus.pid")" 2>/dev/null || break
    sleep 2
  done
  echo "Milvus did not answer: $TRIAL_DIR/milvus.log (and $data/logs/ for milvus-server)" >&2
  exit 1
}

database_up() {
  run "$VENV/bin/python" - "$DATABASE_URL" <<'PY'
import sys
import psycopg
from sqlalchemy.engine import make_url
url = make_url(sys.argv[1])
admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
with psycopg.connect(admin, autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
        conn.execute(f'CREATE DATABASE "{url.database}"')
PY
  run_env "$VENV/bin/immray" db upgrade
}

ray_up() {
  run_env "$VENV/bin/ray" start --head --node-ip-address 127.0.0.1 --port "$RAY_PORT" \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" --num-cpus "$HEAD_CPUS" --num-gpus 0 \
    --temp-dir "$TRIAL_DIR/ray-head" --ray-client-server-port $((RAY_PORT + 10)) \
    --dashboard-agent-listen-port $((RAY_PORT + 20)) --dashboard-agent-grpc-port $((RAY_PORT + 21)) \
    --metrics-export-port $((RAY_PORT + 30)) --min-worker-port 20000 --max-worker-port 20999 \
    --object-store-memory 1000000000 --disable-usage-stats
  worker_up
}

worker_up() {  # the worker node: again after it was lost (a node's raylet killed), it rejoins as a new node
  run_env "$VENV/bin/ray" start --address "127.0.0.1:$RAY_PORT" --node-ip-address 127.0.0.1 \
    --num-cpus "$WORKER_CPUS" --num-gpus "$WORKER_GPUS" --temp-dir "$TRIAL_DIR/ray-worker" \
    --dashboard-agent-listen-port $((RAY_PORT + 22)) --dashboard-agent-grpc-port $((RAY_PORT + 23)) \
    --metrics-export-port $((RAY_PORT + 31)) --min-worker-port 21000 --max-worker-port 21999 \
    --object-store-memory 1000000000 --disable-usage-stats
}

with_descendants() {  # the pids given and every process under them (Ray's agents rename themselves)
  local found="" next="$*"
  while [ -n "$next" ]; do
    found="$found $next"
    # shellcheck disable=SC2086
    next="$(for pid in $next; do pgrep -P "$pid"; done || true)"
  done
  # shellcheck disable=SC2086
  [ -z "${found// /}" ] || printf '%s\n' $found | sort -un
}

trial_pids() {  # this trial's processes only: their command lines name its directory, and their children
  # shellcheck disable=SC2046
  with_descendants $(pgrep -f -- "$TRIAL_DIR/" || true)
}

ray_pids() {  # this trial's Ray processes (both nodes' daemons name their temp dirs) and their children
  # shellcheck disable=SC2046
  with_descendants $(pgrep -f -- "$TRIAL_DIR/ray-" || true)
}

case "$command_name" in
  up)
    run mkdir -p "$TRIAL_DIR/data"
    [ "$DRY_RUN" = 1 ] || printf '%s\n' "${ROOTS[@]}" >"$TRIAL_DIR/roots"
    database_up
    milvus_up
    ray_up
    run_env "$VENV/bin/serve" deploy "$CONFIG" --address "$DASHBOARD"
    run_env "$VENV/bin/immray" keys create --admin --description "trial cluster"
    cat <<EOF

Ray dashboard:   $DASHBOARD   (Serve view: Ingress, FaceAnalysis; Jobs view: backfills)
IMM endpoint:    http://127.0.0.1:$(sed -n 's/^  port: *//p' "$CONFIG" | head -1)   (the key above; protocol http)
Backfill:        eval "\$(deploy/trial/cluster.sh env)"; immray backfill DIR --dataset P/D --follow
Stop:            deploy/trial/cluster.sh down
EOF
    ;;
  worker)
    worker_up
    ;;
  restart)
    pids="$(ray_pids)"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || run kill -KILL $pids || true
    [ "$DRY_RUN" = 1 ] || sleep 3
    ray_up
    run_env "$VENV/bin/serve" deploy "$CONFIG" --address "$DASHBOARD"
    ;;
  down)
    run_env "$VENV/bin/serve" shutdown -y --address "$DASHBOARD" || true
    pids="$(trial_pids)"
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      run kill -TERM $pids || true
      [ "$DRY_RUN" = 1 ] || sleep 5
      pids="$(trial_pids)"
      # shellcheck disable=SC2086
      [ -z "$pids" ] || run kill -KILL $pids || true
    fi
    run rm -f "$TRIAL_DIR/milvus.pid"
    ;;
  status)
    trial_pids | xargs -r ps -o pid,rss,args -p | cut -c1-160
    env "${NODE_ENV[@]}" "$VENV/bin/ray" status --address "127.0.0.1:$RAY_PORT" || true
    ;;
  env)
    cat <<EOF
export RAY_API_SERVER_ADDRESS=$DASHBOARD
export RAY_ADDRESS=127.0.0.1:$RAY_PORT
export IMMRAY_DATABASE_URL='$DATABASE_URL'
export IMMRAY_MILVUS_URI=$MILVUS_URI
export IMMRAY_ALLOWED_ROOTS='$(roots_json)'
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
export PATH="$VENV/bin:\$PATH"
EOF
    ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
