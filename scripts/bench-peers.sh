#!/usr/bin/env bash
# Peer comparison: graphile-worker's drain of N noop jobs (one run() at concurrency 24) and
# `attune bench --mode noop` (N webhooks → rule → core.noop) on the same fresh private
# PostgreSQL cluster, RUNS times, then a ratio per run and the median and range of every
# figure. Latency: graphile's add → start (single addJob calls, paced) and Attune's webhook
# accepted → running at 200 webhooks/s. See docs/benchmarks.md, "Peer comparison".
#
#   scripts/bench-peers.sh [--events N] [--concurrency C] [--runs R] [--no-build]
#
# Environment (flags win): N (20000), CONCURRENCY (64: attune bench's client connections),
# RUNS (3), PEER_CONCURRENCY (24), RATE (200 webhooks/s) and RATE_EVENTS (2000) for Attune's
# paced run, RATE_CONCURRENCY (16), PEER_RATE (100 adds/s) and PEER_RATE_JOBS (200) for the
# peer's latency phase. Needs cargo, node + npm, psql, curl and the PostgreSQL server
# binaries (as `attune up` does). Run it on an idle machine: figures are only comparable
# within one run of this script.
set -euo pipefail
shopt -s inherit_errexit

N=${N:-20000}
CONCURRENCY=${CONCURRENCY:-64}
RUNS=${RUNS:-3}
PEER_CONCURRENCY=${PEER_CONCURRENCY:-24}
RATE=${RATE:-200}
RATE_EVENTS=${RATE_EVENTS:-2000}
RATE_CONCURRENCY=${RATE_CONCURRENCY:-16}
PEER_RATE=${PEER_RATE:-100}
PEER_RATE_JOBS=${PEER_RATE_JOBS:-200}
BUILD=1

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }
die() {
    echo "bench-peers: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --events | -n) N=${2:?--events needs a number}; shift 2 ;;
        --concurrency) CONCURRENCY=${2:?--concurrency needs a number}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
for v in N CONCURRENCY RUNS PEER_CONCURRENCY RATE RATE_EVENTS RATE_CONCURRENCY PEER_RATE PEER_RATE_JOBS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (got '${!v}')"
done
for tool in cargo node npm psql curl; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER_DIR=$ROOT/bench/peers/graphile
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ATTUNE=$TARGET/release/attune

# --- build ---------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    echo "== cargo build --release -p attune"
    (cd "$ROOT" && cargo build --release -p attune) || die "the release build failed"
fi
[ -x "$ATTUNE" ] || die "$ATTUNE not found (build it, or drop --no-build)"
if [ ! -d "$PEER_DIR/node_modules" ]; then
    echo "== npm ci in bench/peers/graphile"
    (cd "$PEER_DIR" && npm ci --no-audit --no-fund) || die "npm ci failed in $PEER_DIR"
fi

# --- a fresh private cluster under a temp data dir ---------------------------------------
# /tmp, not $TMPDIR: the cluster's user (postgres, when this runs as root) must reach
# $DATA/pg, else attune keeps the cluster elsewhere; and the socket path must stay short.
DATA=$(mktemp -d /tmp/attune-peers.XXXXXX)
chmod 0711 "$DATA"
SERVER_PID=
cleanup() {
    local rc=$?
    if [ $rc -eq 1 ] && [ -f "$DATA/attune-up.log" ] && grep -q "shutdown requested" "$DATA/attune-up.log"; then
        echo "bench-peers: attune up was told to stop before the end, by something else:" >&2
        grep -m1 "shutdown requested" "$DATA/attune-up.log" >&2
    fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # SIGTERM: attune up drains its services and stops the private cluster.
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 600); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench-peers: attune up (pid $SERVER_PID) did not stop within 60 s; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    if [ -f "$DATA/pg/data/postmaster.pid" ]; then
        # Left running (the server was killed): stop it with its own pg_ctl, as its owner.
        local pg_ctl owner
        pg_ctl=$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1 || true)
        owner=$(stat -c %U "$DATA/pg/data")
        if [ -n "$pg_ctl" ]; then
            if [ "$(id -un)" = "$owner" ]; then
                "$pg_ctl" -D "$DATA/pg/data" -m fast -w stop >/dev/null 2>&1 || true
            else
                runuser -u "$owner" -- "$pg_ctl" -D "$DATA/pg/data" -m fast -w stop >/dev/null 2>&1 || true
            fi
        fi
    fi
    if [ $rc -eq 1 ] && [ -f "$DATA/attune-up.log" ]; then
        echo "bench-peers: last lines of the server's log:" >&2
        tail -n 20 "$DATA/attune-up.log" >&2
    fi
    rm -rf "$DATA"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local port
    for port in $(seq 18200 18999); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free TCP port in 18200-18999"
}
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
PASSWORD=peers-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')

# Every attune command here: the private cluster in $DATA, never a configured server.
ATTUNE_ENV=(env -u DATABASE_URL -u ATTUNE_DATABASE_URL -u ATTUNE_CONFIG
    ATTUNE_DATA_DIR="$DATA" ATTUNE_ADMIN_PASSWORD="$PASSWORD"
    ATTUNE_API_HOST=127.0.0.1 ATTUNE_API_PORT="$PORT")

echo "== attune up on a fresh private cluster in $DATA (API $URL)"
(exec "${ATTUNE_ENV[@]}" "$ATTUNE" up) >"$DATA/attune-up.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 1200); do
    curl -fsS "$URL/ready" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "attune up exited before it was ready"
    sleep 0.1
done
curl -fsS "$URL/ready" >/dev/null 2>&1 || die "attune up was not ready within 120 s"

SOCKET_DIR=$DATA/pg/run
[ -S "$SOCKET_DIR/.s.PGSQL.5432" ] || die "no PostgreSQL socket in $SOCKET_DIR (did attune keep the cluster elsewhere? its log follows)"
PG_PASSWORD=$(cat "$DATA/secrets/postgres_password") || die "no superuser password in $DATA/secrets"
PEER_URL="postgres://postgres:$PG_PASSWORD@localhost/graphile_bench?host=$SOCKET_DIR"
psql_super() { PGPASSWORD=$PG_PASSWORD PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -U postgres -d postgres "$@"; }

# --- one run of each ---------------------------------------------------------------------
# The peer's own database, made afresh for every run (graphile-worker migrates it itself).
run_peer() {
    psql_super -c "DROP DATABASE IF EXISTS graphile_bench" -c "CREATE DATABASE graphile_bench" ||
        die "cannot create database graphile_bench on the private cluster"
    local out
    # The URL (with the superuser's password) goes by environment, not on a command line.
    out=$(cd "$PEER_DIR" && GRAPHILE_BENCH_URL=$PEER_URL node bench.js --jobs "$N" --concurrency "$PEER_CONCURRENCY" \
        --latency-jobs "$PEER_RATE_JOBS" --latency-rate "$PEER_RATE") || die "the graphile-worker peer failed"
    echo "   peer: $out" >&2
    # -> "jobs/s p50 p99"
    node -e '
        const j = JSON.parse(process.argv[1]);
        if (j.failed) { console.error(`${j.failed} peer jobs failed`); process.exit(1); }
        console.log(j.jobs_per_s, j.latency.p50_ms, j.latency.p99_ms);' "$out" ||
        die "cannot read the peer's figures from: $out"
}

# `attune bench` prints fixed labels (crates/attune/src/bench/mod.rs); read the figures off them.
attune_bench() {
    local out
    out=$("${ATTUNE_ENV[@]}" ATTUNE_BENCH_PASSWORD="$PASSWORD" "$ATTUNE" bench --mode noop --url "$URL" "$@" 2>>"$DATA/attune-bench.log") ||
        die "attune bench $* failed (see above)"
    printf '%s\n' "$out" | sed '/^$/d; s/^/   attune: /' >&2
    local failed
    failed=$(printf '%s\n' "$out" | sed -n 's/^failed executions: *\([0-9]*\)$/\1/p')
    [ "$failed" = 0 ] || die "attune bench: failed executions: '${failed:-not printed}'"
    printf '%s\n' "$out"
}
run_attune() {
    local out rate
    out=$(attune_bench --events "$N" --concurrency "$CONCURRENCY")
    rate=$(printf '%s\n' "$out" | sed -n 's/^first event → last done: .*(\([0-9.]*\) executions\/s end to end)$/\1/p')
    [ -n "$rate" ] || die "cannot read executions/s from attune bench's output"
    echo "$rate"
}
run_attune_paced() {
    local out lat
    out=$(attune_bench --events "$RATE_EVENTS" --concurrency "$RATE_CONCURRENCY" --rate "$RATE")
    # -> "p50 p99"
    lat=$(printf '%s\n' "$out" |
        sed -n 's/^accepted → running *ms: *p50 \([0-9.]*\) *p95 [0-9.]* *p99 \([0-9.]*\)$/\1 \2/p')
    [ -n "$lat" ] || die "cannot read accepted → running from attune bench's output"
    echo "$lat"
}

busy=$(ps -eo comm= | grep -cxE 'cargo|rustc|cc1|cc1plus|ld|rust-lld' || true)
echo "== $RUNS run(s): peer drain of $N jobs at concurrency $PEER_CONCURRENCY; attune bench --events $N --concurrency $CONCURRENCY"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPU(s)"
if [ "$busy" -gt 0 ] || awk -v n="$(nproc)" '{ exit !($1 >= n / 2) }' /proc/loadavg; then
    echo "   WARNING: the machine is not idle ($busy compiler process(es) running, 1-minute load $(cut -d" " -f1 /proc/loadavg)): figures will be noisy"
fi

declare -a PEER_RATES ATTUNE_RATES RATIOS PEER_P50 PEER_P99 ATTUNE_P50 ATTUNE_P99 ORDERS
for run in $(seq 1 "$RUNS"); do
    # Alternate which goes first, so neither always runs after the other's burst.
    if [ $((run % 2)) = 1 ]; then order="peer first"; else order="attune first"; fi
    echo "== run $run of $RUNS ($order; load $(cut -d' ' -f1 /proc/loadavg))"
    # (Each step is a command substitution: a failure inside it stops the script here.)
    if [ $((run % 2)) = 1 ]; then
        peer=$(run_peer)
        attune_rate=$(run_attune)
        attune_lat=$(run_attune_paced)
    else
        attune_rate=$(run_attune)
        attune_lat=$(run_attune_paced)
        peer=$(run_peer)
    fi
    read -r peer_rate peer_p50 peer_p99 <<<"$peer"
    read -r attune_p50 attune_p99 <<<"$attune_lat"
    PEER_RATES+=("$peer_rate") ATTUNE_RATES+=("$attune_rate") ORDERS+=("$order")
    RATIOS+=("$(awk -v a="$attune_rate" -v p="$peer_rate" 'BEGIN { printf "%.2f", a / p }')")
    PEER_P50+=("$peer_p50") PEER_P99+=("$peer_p99") ATTUNE_P50+=("$attune_p50") ATTUNE_P99+=("$attune_p99")
done

# --- the table ---------------------------------------------------------------------------
# "median (min–max)" of the arguments.
summary() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%g (%g–%g)", m, v[1], v[NR] }'
}
echo
echo "Peer comparison, $(date -u +%Y-%m-%d) — $N noop jobs; graphile-worker 0.16.6 at concurrency $PEER_CONCURRENCY;"
echo "attune bench at $CONCURRENCY connections; latency: attune at $RATE webhooks/s ($RATE_EVENTS), peer at $PEER_RATE adds/s ($PEER_RATE_JOBS)"
echo
# (The headers' arrows are 3 bytes in UTF-8 and printf pads bytes: 2 more columns each.)
fmt='%-4s %-13s %12s %20s %6s %20s %26s\n'
printf "$fmt" run order "peer jobs/s" "attune executions/s" ratio "peer add→start" "attune accepted→running"
printf "$fmt" "" "" "" "" "" "p50 / p99 ms" "p50 / p99 ms"
for i in "${!PEER_RATES[@]}"; do
    printf "$fmt" "$((i + 1))" "${ORDERS[$i]}" "${PEER_RATES[$i]}" "${ATTUNE_RATES[$i]}" "${RATIOS[$i]}" \
        "${PEER_P50[$i]} / ${PEER_P99[$i]}" "${ATTUNE_P50[$i]} / ${ATTUNE_P99[$i]}"
done
echo
echo "median (range) of $RUNS run(s):"
echo "  peer jobs/s:                        $(summary "${PEER_RATES[@]}")"
echo "  attune executions/s:                $(summary "${ATTUNE_RATES[@]}")"
echo "  ratio attune / peer:                $(summary "${RATIOS[@]}")"
echo "  peer add → start ms:                p50 $(summary "${PEER_P50[@]}"), p99 $(summary "${PEER_P99[@]}")"
echo "  attune accepted → running ms:       p50 $(summary "${ATTUNE_P50[@]}"), p99 $(summary "${ATTUNE_P99[@]}")"
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
