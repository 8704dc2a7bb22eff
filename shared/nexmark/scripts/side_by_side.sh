#!/usr/bin/env bash
# Runs shardflow and Apache Flink (PyFlink, parallelism 1, blackhole sinks) back to back on the
# same files, interleaved per query (shardflow ROUNDS times, then Flink once), so that both see
# about the same machine load.
#
#   cargo build --release -p shardflow-cli
#   python3 -m venv /tmp/bench/flink-venv && /tmp/bench/flink-venv/bin/pip install apache-flink orjson
#   shared/nexmark/scripts/side_by_side.sh /tmp/bench/nexmark_1m.jsonl /tmp/bench/nexmark_5m.jsonl
#
# Writes shardflow's runs (measure.sh's TSV) to $RESULTS/shardflow.tsv and Flink's (one CSV row
# per run, with load average and the CPU time of other processes) to $RESULTS/flink.csv.
# Env: BENCH (default ../shared/bench), PYFLINK (default /tmp/bench/flink-venv/bin/python),
#      RESULTS (default ./side_by_side), QUERIES (default "q0 agg q5 q7 q8"), ROUNDS (default 3),
#      BIN (the shardflow binary, as for measure.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$here/../../../../shared/bench}
PYFLINK=${PYFLINK:-/tmp/bench/flink-venv/bin/python}
RESULTS=${RESULTS:-side_by_side}
QUERIES=${QUERIES:-q0 agg q5 q7 q8}
export ROUNDS=${ROUNDS:-3}
mkdir -p "$RESULTS"
header=1
for f in "$@"; do
  events=$(wc -l <"$f")
  for q in $QUERIES; do
    echo "$(date +%T) $(basename "$f") $q: shardflow x$ROUNDS" >&2
    QUERIES=$q "$here/measure.sh" "$f" | tail -n +$((2 - header)) >>"$RESULTS/shardflow.tsv"
    header=0
    echo "$(date +%T) $(basename "$f") $q: flink" >&2
    "$PYFLINK" "$BENCH/flink_nexmark.py" --input "$f" --events "$events" --queries "$q" \
      --parallelism 1 --sink blackhole --csv "$RESULTS/flink.csv" >&2
  done
done
