#!/usr/bin/env bash
# Whole-process load run: fake upstream direct vs bare Pingora passthrough vs Sluice.
#
# Starts, on free 127.0.0.1 ports:
#   fake-llm    (sluice-tests)     the upstream; TOKIO_WORKER_THREADS=1
#   bare-proxy  (sluice-benches)   Pingora ProxyHttp with only upstream_peer; --threads 1
#   sluice                         the gateway; server.threads: 1, logs at warn
# and drives each target with `loadgen` (one tokio worker thread):
#   json-1k    JSON chat, open loop at $RATE req/s for $DURATION s over $OPEN_CONNS connections
#   json-sat   JSON chat, closed loop, $SAT_CONNS connections, $ROUNDS rounds of $SAT_DURATION s
#   sse-sat    streaming chat (chunks-8-0: role + 8 content chunks + finish + [DONE]), closed loop,
#              like json-sat
# Saturation rounds rotate the target order; the median round is reported (see README.md).
# Each server gets one worker thread and so does the load generator; nothing is pinned, so on a
# 2-core machine the three busy threads share two cores (see README.md).
#
# Writes benches/results/latest.md (and the raw JSON lines next to it) and prints the table.
# Everything after the build is bounded by a watchdog ($BUDGET_S seconds, default 230); each
# loadgen call is bounded by `timeout` as well as by its own caps. All processes started here
# are killed on exit.
#
# Env knobs: RATE (1000) DURATION (10) OPEN_CONNS (16) SAT_CONNS (32) ROUNDS (3)
#            SAT_DURATION (4) WARMUP (2) BUDGET_S (230) WAIT_QUIET (60: seconds to wait, within
#            the budget, for other processes to leave the CPUs idle before measuring)
#            SKIP_BUILD (unset; set to 1 to use the existing release binaries)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/release"
OUT_DIR="$ROOT/benches/results"
RATE="${RATE:-1000}"
DURATION="${DURATION:-10}"
OPEN_CONNS="${OPEN_CONNS:-16}"
SAT_CONNS="${SAT_CONNS:-32}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
SAT_DURATION="${SAT_DURATION:-4}"
BUDGET_S="${BUDGET_S:-230}"
WAIT_QUIET="${WAIT_QUIET:-60}"

if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "load.sh: building release binaries (a no-op when up to date)" >&2
    cargo build --release --locked -p sluice --bin sluice -p sluice-tests --bin fake-llm \
        -p sluice-benches --bin bare-proxy --bin loadgen >&2
fi
for b in sluice fake-llm bare-proxy loadgen; do
    [[ -x "$BIN/$b" ]] || { echo "load.sh: missing $BIN/$b (run without SKIP_BUILD)" >&2; exit 1; }
done

WORK="$(mktemp -d -t sluice-load.XXXXXX)"
PIDS=()
WATCHDOG=""
cleanup() {
    local rc=$?
    [[ -n "$WATCHDOG" ]] && kill "$WATCHDOG" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&2; exit 130' INT
trap 'echo "load.sh: time budget of ${BUDGET_S}s exceeded" >&2; exit 124' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# Time budget for everything after the build: a subshell that signals this script when the
# budget is spent; cleanup stops it (and its sleep) early.
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$BUDGET_S" &
    sp=$!
    wait "$sp" && kill -TERM $$
) 2>/dev/null &
WATCHDOG=$!

read -r P_FAKE P_BARE P_SLUICE P_ADMIN < <("$BIN/loadgen" --free-ports 4)

# How busy the machine is before we start (other builds or tests skew every number here).
cpu_busy_pct() { # over 2 s, all CPUs
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2];
        printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}
# On a shared machine, wait (at most $WAIT_QUIET s, out of the budget) for other work to stop.
BUSY_BEFORE=$(cpu_busy_pct)
waited=0
while (( BUSY_BEFORE > 10 && waited + 2 <= WAIT_QUIET )); do
    (( waited == 0 )) && echo "load.sh: machine ${BUSY_BEFORE}% busy; waiting up to ${WAIT_QUIET}s for quiet" >&2
    BUSY_BEFORE=$(cpu_busy_pct)
    waited=$((waited + 2))
done
if (( BUSY_BEFORE > 15 )); then
    echo "load.sh: warning: the machine is already ${BUSY_BEFORE}% busy; results will be skewed" >&2
fi

# ---- bodies -----------------------------------------------------------------------------
chat_body() { # model [stream]
    local stream=""
    [[ "${2:-}" == stream ]] && stream=',"stream":true'
    printf '{"model":"%s","messages":[{"role":"system","content":"You are a concise assistant. Answer in plain text."},{"role":"user","content":"Summarize the trade-offs between open-loop and closed-loop load generation in two short sentences, please. Keep it brief."}],"temperature":0.2,"max_tokens":64,"user":"bench-user-0001"%s}' "$1" "$stream"
}
chat_body echo > "$WORK/chat-direct.json"
chat_body bench > "$WORK/chat-sluice.json"
chat_body chunks-8-0 stream > "$WORK/sse-direct.json"
chat_body bench-stream stream > "$WORK/sse-sluice.json"

# ---- servers ----------------------------------------------------------------------------
TOKIO_WORKER_THREADS=1 "$BIN/fake-llm" --listen "127.0.0.1:$P_FAKE" > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
FAKE_PID=$!
"$BIN/bare-proxy" --listen "127.0.0.1:$P_BARE" --upstream "127.0.0.1:$P_FAKE" --threads 1 \
    > "$WORK/bare.log" 2>&1 &
PIDS+=($!)
BARE_PID=$!

KEY_SHA=$(printf %s sk-bench | sha256sum | cut -d' ' -f1)
# The config gets a directory of its own: Sluice watches the config's directory for reloads,
# and the logs and results written to $WORK would wake the watcher on every write.
mkdir -p "$WORK/config"
cat > "$WORK/config/sluice.yaml" <<EOF
server: { listen: "127.0.0.1:$P_SLUICE", admin_listen: "127.0.0.1:$P_ADMIN", threads: 1, drain_timeout: 1s }
auth: { required: true }
providers:
  - { name: fake, kind: openai, base_url: "http://127.0.0.1:$P_FAKE/v1", api_key: "sk-upstream" }
models:
  - { name: bench, targets: [ { provider: fake, model: echo } ] }
  - { name: bench-stream, targets: [ { provider: fake, model: "chunks-8-0" } ] }
keys:
  - { id: bench, key_sha256: "$KEY_SHA" }
logs: { format: json, level: warn }
EOF
"$BIN/sluice" --config "$WORK/config/sluice.yaml" > "$WORK/sluice.log" 2>&1 &
PIDS+=($!)
SLUICE_PID=$!

wait_http() { # name url
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "load.sh: $1 did not become ready at $2; logs:" >&2
    tail -n 20 "$WORK"/*.log >&2 || true
    exit 1
}
wait_http fake-llm "http://127.0.0.1:$P_FAKE/healthz"
wait_http bare-proxy "http://127.0.0.1:$P_BARE/healthz"
wait_http sluice "http://127.0.0.1:$P_ADMIN/readyz"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
sleep 0.5
IDLE_RSS_KB=$(rss_kb "$SLUICE_PID")
BARE_IDLE_RSS_KB=$(rss_kb "$BARE_PID")

# ---- load ---------------------------------------------------------------------------------
declare -A ADDR=([direct]="127.0.0.1:$P_FAKE" [bare]="127.0.0.1:$P_BARE" [sluice]="127.0.0.1:$P_SLUICE")
# The process whose CPU time a run against each target is charged to.
declare -A SERVER_PID=([direct]="$FAKE_PID" [bare]="$BARE_PID" [sluice]="$SLUICE_PID")
declare -A RESULT CPU_US ROUND_RPS
RAW="$WORK/raw.jsonl"
: > "$RAW"
CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() { # pid -> utime + stime of the whole process (all threads), in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
loadgen() { # label loadgen-args...
    local label=$1
    shift
    local line
    line=$(timeout $((DURATION + SAT_DURATION + 20)) "$BIN/loadgen" --label "$label" "$@")
    echo "$line" >> "$RAW"
    echo "$line"
}
body_for() { # scenario target
    local kind=chat side=direct
    [[ $1 == sse-sat ]] && kind=sse
    [[ $2 == sluice ]] && side=sluice
    echo "$WORK/$kind-$side.json"
}
# awk arithmetic; the expression is parenthesised so `>` compares instead of redirecting.
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }
verdict() { awk "BEGIN { print (($1) ? \"met\" : \"**missed**\") }"; }
field() { # json-line name
    sed -E "s/.*\"$2\":([^,}]*).*/\1/" <<< "$1" | tr -d '"'
}
measure() { # key scenario target duration loadgen-args... ; stores RESULT[key] and CPU_US[key]
    local key=$1 s=$2 t=$3 d=$4
    shift 4
    local pid=${SERVER_PID[$t]} c0 c1 line n
    echo "load.sh: $key (${d}s)" >&2
    c0=$(cpu_ticks "$pid")
    line=$(loadgen "$key" --addr "${ADDR[$t]}" --body "$(body_for "$s" "$t")" --duration "$d" "$@")
    c1=$(cpu_ticks "$pid")
    n=$(field "$line" requests)
    RESULT[$key]=$line
    CPU_US[$key]=$(calc "%.1f" "$n > 0 ? ($c1 - $c0) * 1e6 / $CLK_TCK / $n : 0")
}

# CPU accounting for the measurement phase: whole machine, our servers, our loadgen runs
# (children of this script). What is left was used by other processes.
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
servers_ticks() { echo $(( $(cpu_ticks "$FAKE_PID") + $(cpu_ticks "$BARE_PID") + $(cpu_ticks "$SLUICE_PID") )); }
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
M0=$(machine_busy_ticks); S0=$(servers_ticks); C0=$(children_ticks); T0=$(date +%s.%N)

for t in direct bare sluice; do
    echo "load.sh: warming up $t (${WARMUP}s)" >&2
    loadgen "warmup/$t" --addr "${ADDR[$t]}" --body "$(body_for json-sat "$t")" \
        --saturate --connections 8 --duration "$WARMUP" > /dev/null
    loadgen "warmup-sse/$t" --addr "${ADDR[$t]}" --body "$(body_for sse-sat "$t")" \
        --saturate --connections 8 --duration 1 > /dev/null
done

# Open loop: one run per target.
for t in direct bare sluice; do
    measure "json-1k/$t" json-1k "$t" "$DURATION" --rate "$RATE" --connections "$OPEN_CONNS"
done

# Saturation: $ROUNDS short rounds per target in rotated order (this VM's throughput drifts
# by tens of percent over a minute); the round with the median req/s is reported.
ORDERS=("direct bare sluice" "sluice direct bare" "bare sluice direct")
for s in json-sat sse-sat; do
    for r in $(seq 1 "$ROUNDS"); do
        for t in ${ORDERS[$(((r - 1) % 3))]}; do
            measure "$s/$t/$r" "$s" "$t" "$SAT_DURATION" --saturate --connections "$SAT_CONNS"
        done
    done
    for t in direct bare sluice; do
        best=$(for r in $(seq 1 "$ROUNDS"); do
            echo "$(field "${RESULT[$s/$t/$r]}" rps) $r"
        done | sort -n | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }')
        RESULT[$s/$t]=${RESULT[$s/$t/$best]}
        CPU_US[$s/$t]=${CPU_US[$s/$t/$best]}
        ROUND_RPS[$s/$t]=$(for r in $(seq 1 "$ROUNDS"); do
            printf '%.0f ' "$(field "${RESULT[$s/$t/$r]}" rps)"
        done | sed 's/ $//; s/ / \/ /g')
    done
done
M1=$(machine_busy_ticks); S1=$(servers_ticks); C1=$(children_ticks); T1=$(date +%s.%N)
sleep 0.5
LOADED_RSS_KB=$(rss_kb "$SLUICE_PID")
BARE_LOADED_RSS_KB=$(rss_kb "$BARE_PID")

# ---- report -------------------------------------------------------------------------------

mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/latest.md"
{
    echo "## Load run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)," \
        "$(uname -m), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
        "kernel $(uname -r), CPU busy before the run ${BUSY_BEFORE}%, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')."
    FOREIGN=$(calc "%.0f" "100 * (($M1 - $M0) - ($S1 - $S0) - ($C1 - $C0)) / (($T1 - $T0) * $CLK_TCK * $(nproc))")
    echo "CPU used by other processes during the measurements: ${FOREIGN}% of the machine" \
        "(servers + loadgen used $(calc "%.0f" "100 * (($S1 - $S0) + ($C1 - $C0)) / (($T1 - $T0) * $CLK_TCK * $(nproc))")%)."
    echo "Each server 1 worker thread, loadgen 1 thread, nothing pinned. json-1k: open loop" \
        "$RATE req/s for ${DURATION}s over $OPEN_CONNS connections. json-sat / sse-sat: closed loop," \
        "$SAT_CONNS connections, $ROUNDS rounds of ${SAT_DURATION}s per target in rotated order; the" \
        "median round (by req/s) is shown, all rounds in the last column. Server CPU = user + system" \
        "time of the target process (fake-llm for direct) per response."
    echo
    echo "| scenario | target | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU µs/req | requests | errors | non-2xx | req/s of each round |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for s in json-1k json-sat sse-sat; do
        for t in direct bare sluice; do
            r=${RESULT[$s/$t]}
            echo "| $s | $t | $(field "$r" rps) | $(field "$r" p50_ms) | $(field "$r" p90_ms)" \
                "| $(field "$r" p99_ms) | $(field "$r" p999_ms) | $(field "$r" max_ms)" \
                "| ${CPU_US[$s/$t]} | $(field "$r" requests) | $(field "$r" errors)" \
                "| $(field "$r" non2xx) | ${ROUND_RPS[$s/$t]:--} |"
        done
    done
    echo
    sj=$(field "${RESULT[json-sat/sluice]}" rps); bj=$(field "${RESULT[json-sat/bare]}" rps)
    ss=$(field "${RESULT[sse-sat/sluice]}" rps); bs=$(field "${RESULT[sse-sat/bare]}" rps)
    d50=$(field "${RESULT[json-1k/direct]}" p50_ms); d99=$(field "${RESULT[json-1k/direct]}" p99_ms)
    s50=$(field "${RESULT[json-1k/sluice]}" p50_ms); s99=$(field "${RESULT[json-1k/sluice]}" p99_ms)
    b50=$(field "${RESULT[json-1k/bare]}" p50_ms); b99=$(field "${RESULT[json-1k/bare]}" p99_ms)
    json_pct=$(calc "%.1f" "100 * $sj / ($bj > 0 ? $bj : 1)")
    sse_pct=$(calc "%.1f" "100 * $ss / ($bs > 0 ? $bs : 1)")
    json_cpu=$(calc "%.1f" "100 * ${CPU_US[json-sat/bare]} / (${CPU_US[json-sat/sluice]} > 0 ? ${CPU_US[json-sat/sluice]} : 1)")
    sse_cpu=$(calc "%.1f" "100 * ${CPU_US[sse-sat/bare]} / (${CPU_US[sse-sat/sluice]} > 0 ? ${CPU_US[sse-sat/sluice]} : 1)")
    add50=$(calc "%.3f" "$s50 - $d50"); add99=$(calc "%.3f" "$s99 - $d99")
    badd50=$(calc "%.3f" "$b50 - $d50"); badd99=$(calc "%.3f" "$b99 - $d99")
    sb50=$(calc "%.3f" "$s50 - $b50"); sb99=$(calc "%.3f" "$s99 - $b99")
    idle_mb=$(calc "%.1f" "$IDLE_RSS_KB / 1024"); loaded_mb=$(calc "%.1f" "$LOADED_RSS_KB / 1024")
    echo "| measure | value | target | |"
    echo "|---|---:|---:|---|"
    echo "| Sluice / bare Pingora throughput, JSON (json-sat, median rounds) | $json_pct % | ≥ 85 % | $(verdict "$json_pct >= 85") |"
    echo "| Sluice / bare Pingora throughput, SSE (sse-sat, median rounds) | $sse_pct % | ≥ 85 % | $(verdict "$sse_pct >= 85") |"
    echo "| bare CPU per request / Sluice CPU per request, JSON / SSE | $json_cpu % / $sse_cpu % | - | |"
    echo "| Sluice added latency vs direct, p50 @ $RATE req/s | $add50 ms | ≤ 0.15 ms | $(verdict "$add50 <= 0.15") |"
    echo "| Sluice added latency vs direct, p99 @ $RATE req/s | $add99 ms | ≤ 1 ms | $(verdict "$add99 <= 1") |"
    echo "| bare Pingora added latency vs direct, p50 / p99 (reference) | $badd50 / $badd99 ms | - | |"
    echo "| Sluice added latency vs bare Pingora, p50 / p99 | $sb50 / $sb99 ms | - | |"
    echo "| Sluice RSS idle (after start, before load) | $idle_mb MB | ≤ 50 MB | $(verdict "$idle_mb <= 50") |"
    echo "| Sluice RSS after load | $loaded_mb MB | - | |"
    echo "| bare Pingora RSS idle / after load (reference) |" \
        "$(calc "%.1f" "$BARE_IDLE_RSS_KB / 1024") / $(calc "%.1f" "$BARE_LOADED_RSS_KB / 1024") MB | - | |"
} > "$REPORT"
cp "$RAW" "$OUT_DIR/latest.jsonl"
if grep -qiE '"level":"(WARN|ERROR)"' "$WORK/sluice.log"; then
    echo "load.sh: sluice logged warnings/errors during the run:" >&2
    grep -iE '"level":"(WARN|ERROR)"' "$WORK/sluice.log" | sort | uniq -c | sort -rn | head -n 5 >&2
fi
cat "$REPORT"
