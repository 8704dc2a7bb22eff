#!/usr/bin/env bash
# Runs every Nexmark query over each given JSON-lines file ROUNDS times with the release
# `shardflow` binary and prints one TSV row per run (wall and CPU events/s, peak RSS, load).
#
#   cargo build --release -p shardflow-cli
#   shared/nexmark/scripts/measure.sh /tmp/bench/nexmark_1m.jsonl /tmp/bench/nexmark_5m.jsonl
#
# Env: BIN (default target/release/shardflow, or $CARGO_TARGET_DIR/release/shardflow),
#      ROUNDS (default 3), QUERIES (default "q0 agg q5 q7 q8"),
#      OUT (CSV output directory, default a temporary one).
# other_cpu_s is the CPU time the rest of the machine used during the run (busy CPU of
# /proc/stat minus the run's own): how much the run had to share the cores.
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/shardflow}
ROUNDS=${ROUNDS:-3}
QUERIES=${QUERIES:-q0 agg q5 q7 q8}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal).
busy_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.2f", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }
printf 'file\tquery\tround\tevents\twall_s\tevents_per_s\tcpu_s\tevents_per_cpu_s\tpeak_rss_mb\ttime_v_maxrss_kb\tload1\tother_cpu_s\n'
for f in "$@"; do
  for r in $(seq 1 "$ROUNDS"); do
    for q in $QUERIES; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      busy0=$(busy_cpu_s)
      line=$(/usr/bin/time -f "maxrss=%M" "$BIN" nexmark --query "$q" --input "$f" --output "$OUT/$q.csv" 2>&1)
      busy1=$(busy_cpu_s)
      field() { grep -o "$1" <<<"$line" | grep -o "$2" | head -1; }
      cpu=$(field 'CPU [0-9.]* s' '[0-9.]*')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$f")" "$q" "$r" \
        "$(field 'events in [0-9]*' '[0-9]*$')" "$(field ', [0-9.]* s, ' '[0-9.]*')" \
        "$(field '[0-9]* events/s' '^[0-9]*')" "$(field 'CPU [0-9.]* s' '[0-9.]*')" \
        "$(field '[0-9]* events per CPU' '^[0-9]*')" "$(field 'peak RSS [0-9.]* MB' '[0-9.]*')" \
        "$(field 'maxrss=[0-9]*' '[0-9]*$')" "$load" "$(awk -v a="$busy0" -v b="$busy1" -v c="${cpu:-0}" 'BEGIN{printf "%.1f", b-a-c}')"
    done
  done
done
