#!/usr/bin/env bash
# Side by side: the same benchmark, with the same parameters, against Myelin on SQLite, Myelin on
# PostgreSQL (when one answers on 127.0.0.1:5432) and Synapse (when `matrix-synapse` is installed
# from PyPI), one server at a time on this machine. Samples each server's peak RSS and CPU time
# from /proc, times Myelin's restart on the database the run left (until it answers /versions),
# and prints a markdown table with Synapse/Myelin ratios.
#
#   bench/compare.sh [myelin-bench options…]      e.g. bench/compare.sh --messages 2000
#
# Everything runs on loopback; every server is stopped when its run ends.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# BENCH_PROFILE=debug for a quick check of the script itself; numbers only mean something in release.
PROFILE="${BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then
    cargo build --release -q -p homeserver -p bench
else
    cargo build -q -p homeserver -p bench
fi
MYELIN="$CARGO_TARGET_DIR/$PROFILE/myelin"
BENCH="$CARGO_TARGET_DIR/$PROFILE/myelin-bench"
WORK=$(mktemp -d /tmp/myelin-compare.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_ready() { # url
    for _ in $(seq 1 300); do
        curl -fsS "$1/_matrix/client/versions" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "server at $1 did not start" >&2
    return 1
}

# Peak RSS (KiB) and user+system CPU seconds of a process, as JSON for the results file.
sample() { # pid label
    local hwm ticks hz
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$1/status")
    ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
    hz=$(getconf CLK_TCK)
    printf '{"server":"%s","scenario":"process","peak_rss_mib":%s,"cpu_seconds":%s}\n' \
        "$2" "$(awk "BEGIN {printf \"%.1f\", $hwm / 1024}")" "$(awk "BEGIN {printf \"%.1f\", $ticks / $hz}")" >>"$RESULTS"
}

run_bench() { # url label pid
    "$BENCH" --url "$1" --label "$2" "${BENCH_ARGS[@]}" >>"$RESULTS"
    sample "$3" "$2"
}

start_myelin() { # dir port database_url
    MYELIN_SERVER_NAME=localhost MYELIN_LISTEN="127.0.0.1:$2" MYELIN_DATA_DIR="$1" \
        MYELIN_DATABASE_URL="$3" MYELIN_REGISTRATION=open MYELIN_LOG__LEVEL=warn \
        "$MYELIN" serve >>"$1/server.log" 2>&1 &
    SERVER_PID=$!
}

# Milliseconds from starting the server on the database the benchmark left until it answers
# /versions (best of three restarts: the first may wait for the OS to page the binary in).
time_restart() { # label dir port database_url
    local best="" started ready elapsed deadline
    for _ in 1 2 3; do
        started=$(date +%s%N)
        deadline=$((started + 30000000000))
        start_myelin "$2" "$3" "$4"
        until curl -fsS "http://127.0.0.1:$3/_matrix/client/versions" >/dev/null 2>&1; do
            kill -0 "$SERVER_PID" 2>/dev/null || { echo "server $1 exited on restart" >&2; return 1; }
            [ "$(date +%s%N)" -lt "$deadline" ] || { echo "server $1 not ready 30 s after a restart" >&2; return 1; }
            sleep 0.002
        done
        ready=$(date +%s%N)
        stop_server
        elapsed=$(( (ready - started) / 1000000 ))
        if [ -z "$best" ] || [ "$elapsed" -lt "$best" ]; then best=$elapsed; fi
    done
    printf '{"server":"%s","scenario":"restart","ready_ms":%s}\n' "$1" "$best" >>"$RESULTS"
}

run_myelin() { # label database_url
    local port dir
    port=$(free_port)
    dir="$WORK/$1"
    mkdir -p "$dir"
    start_myelin "$dir" "$port" "$2"
    wait_ready "http://127.0.0.1:$port"
    run_bench "http://127.0.0.1:$port" "$1" "$SERVER_PID"
    stop_server
    time_restart "$1" "$dir" "$port" "$2"
}

run_synapse() {
    local port dir
    port=$(free_port)
    dir="$WORK/synapse"
    mkdir -p "$dir"
    local unlimited="{per_second: 100000, burst_count: 100000}"
    cat >"$dir/homeserver.yaml" <<YAML
server_name: "localhost"
pid_file: $dir/homeserver.pid
listeners:
  - {port: $port, bind_addresses: ["127.0.0.1"], type: http, tls: false, resources: [{names: [client]}]}
database: {name: sqlite3, args: {database: $dir/homeserver.db}}
media_store_path: $dir/media
signing_key_path: $dir/signing.key
report_stats: false
enable_registration: true
enable_registration_without_verification: true
macaroon_secret_key: "compare"
form_secret: "compare"
trusted_key_servers: []
suppress_key_server_warning: true
presence: {enabled: false}
rc_message: $unlimited
rc_registration: $unlimited
rc_joins: {local: $unlimited, remote: $unlimited}
rc_joins_per_room: $unlimited
rc_login: {address: $unlimited, account: $unlimited, failed_attempts: $unlimited}
rc_invites: {per_room: $unlimited, per_user: $unlimited, per_issuer: $unlimited}
rc_room_creation: $unlimited
rc_3pid_validation: $unlimited
rc_presence: {per_user: $unlimited}
YAML
    python3 -m synapse.app.homeserver --generate-keys -c "$dir/homeserver.yaml" >/dev/null
    python3 -m synapse.app.homeserver -c "$dir/homeserver.yaml" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$port"
    run_bench "http://127.0.0.1:$port" synapse "$SERVER_PID"
    stop_server
}

BENCH_ARGS=("$@")
run_myelin myelin-sqlite "sqlite://$WORK/myelin-sqlite/myelin.db?mode=rwc"
PG="${MYELIN_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    db="bench_$$"
    psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
    run_myelin myelin-postgres "${PG%/*}/$db"
    psql "$PG" -qc "DROP DATABASE $db" >/dev/null || true
else
    echo "skipped: PostgreSQL is not answering on 127.0.0.1:5432" >&2
fi
if python3 -c 'import synapse.app.homeserver' 2>/dev/null; then
    run_synapse
else
    echo "skipped: Synapse is not installed (pip install matrix-synapse)" >&2
fi

python3 - "$RESULTS" <<'PY'
import json, sys
rows, servers = {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    record = json.loads(line)
    server = record.pop("server")
    scenario = record.pop("scenario")
    if server not in servers:
        servers.append(server)
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.setdefault((scenario, key), {})[server] = value
myelin = [s for s in servers if s.startswith("myelin")]
header = ["scenario", "metric"] + servers + (["Synapse ÷ " + m for m in myelin] if "synapse" in servers else [])
print("| " + " | ".join(header) + " |")
print("|" + " --- |" * len(header))
for (scenario, key), values in rows.items():
    cells = [scenario, key] + [f"{values[s]:,}" if s in values else "—" for s in servers]
    if "synapse" in servers:
        for m in myelin:
            a, b = values.get("synapse"), values.get(m)
            cells.append(f"{a / b:.1f}×" if a and b else "—")
    print("| " + " | ".join(cells) + " |")
PY
echo "raw results: $RESULTS" >&2
