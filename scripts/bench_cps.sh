#!/usr/bin/env bash
# Signalling-only call rate: sipp's built-in uac (INVITE/100/200/ACK/BYE, no RTP) against a
# release Parley, and against sipp's own built-in uas on the same machine for comparison.
# Usage: scripts/bench_cps.sh [RATE ...]   (default rates: 500 1000 1500 2000)
# Each run places rate*10 calls (10 s at that rate). Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(500 1000 1500 2000)
command -v sipp >/dev/null || { echo "sipp missing: run scripts/setup.sh" >&2; exit 1; }
cargo build --release -q
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=25060; http=28080

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

run_sipp() { # rate target -> "ok failed seconds"
    local rate=$1 target=$2 n=$(( $1 * 10 ))
    local start end
    start=$(date +%s.%N)
    sipp -sn uac "$target" -r "$rate" -m "$n" -l 100000 -i 127.0.0.1 -p 25070 \
        -timeout 60s -trace_stat -stf "$work/stat.csv" -nostdin >/dev/null 2>&1 || true
    end=$(date +%s.%N)
    local last; last=$(tail -1 "$work/stat.csv")
    # Columns of sipp's stat file: SuccessfulCall(C) is field 16 (cumulative), FailedCall(C) 18.
    local ok failed
    ok=$(echo "$last" | awk -F';' '{print $16}')
    failed=$(echo "$last" | awk -F';' '{print $18}')
    rm -f "$work/stat.csv"
    echo "$ok $failed $(echo "$end - $start" | bc)"
}

measure() { # name pid rate target
    local name=$1 pid=$2 rate=$3 target=$4 hz; hz=$(getconf CLK_TCK)
    local t0 t1 res secs
    t0=$(cpu_ticks "$pid")
    res=$(run_sipp "$rate" "$target")
    t1=$(cpu_ticks "$pid")
    secs=$(echo "$res" | awk '{print $3}')
    local cpu; cpu=$(echo "scale=1; 100 * ($t1 - $t0) / $hz / $secs" | bc)
    local rss; rss=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    printf '%-12s rate=%-5s ok=%-6s failed=%-4s wall=%5.1fs cpu=%5s%% peak_rss=%s KiB\n' \
        "$name" "$rate" $(echo "$res" | awk '{print $1, $2}') "$secs" "$cpu" "$rss"
}

for rate in "${rates[@]}"; do
    PARLEY_SIP_LISTEN=127.0.0.1:$port PARLEY_HTTP_LISTEN=127.0.0.1:$http PARLEY_DATA_DIR="$work/data" \
    PARLEY_MEDIA_RTP_PORTS=30000-39999 PARLEY_SIP_MAX_CALLS=100000 PARLEY_LOG=warn \
        ./target/release/parley serve >"$work/parley.log" 2>&1 &
    ppid=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
    measure parley "$ppid" "$rate" "127.0.0.1:$port"
    kill "$ppid"; wait "$ppid" 2>/dev/null || true

    sipp -sn uas -i 127.0.0.1 -p $port -nostdin >/dev/null 2>&1 &
    upid=$!
    sleep 0.5
    measure sipp-uas "$upid" "$rate" "127.0.0.1:$port"
    kill "$upid"; wait "$upid" 2>/dev/null || true
done
