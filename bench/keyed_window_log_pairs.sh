#!/usr/bin/env bash
# The KW ratio of brisk's log backend to Flink with RocksDB, measured in pairs:
#   bench/keyed_window_log_pairs.sh PAIRS EVENTS KEYS CORES [BUDGET_BYTES]
# Each pair runs shared/flink/keyed_window.sh (rocksdb, 1 s checkpoints), then brisk's
# keyed_window on the log backend at BUDGET_BYTES per core (default 16 MiB, incremental 1 s
# checkpoints), one right after the other. This machine's speed drifts by up to 2x over tens
# of minutes (bench/RESULTS.md, twenty-first figures), so one pair's ratio is taken in one
# phase; the median over the pairs is the figure. BRISK_EVENTS=N runs brisk on N events
# (it runs 20-80 times as fast as Flink). Prints one row per pair, then the median ratio.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
pairs="${1:?PAIRS}"; events="${2:?EVENTS}"; keys="${3:?KEYS}"; cores="${4:?CORES}"
budget="${5:-16777216}"
brisk_events="${BRISK_EVENTS:-$events}"
(cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_window)
brisk="$root/target/release/keyed_window"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -1; }

echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F)"
echo "workload: KW, $events events (brisk: $brisk_events), $keys keys, $cores cores, checkpoints every 1 s;" \
  "brisk log backend at $((budget >> 20)) MiB/core"
printf '\n| pair | Flink+RocksDB events/s | brisk log events/s | ratio |\n|---:|---:|---:|---:|\n'
ratios=()
for i in $(seq 1 "$pairs"); do
  rm -rf "$work/f" "$work/b"
  flink=$("$shared/flink/keyed_window.sh" "$events" "$cores" "$keys" rocksdb 1000 "$work/f" | field events_per_s)
  rm -rf "$work/f"
  rate=$("$brisk" --events "$brisk_events" --keys "$keys" --cores "$cores" --state-backend log \
    --state-memory-budget "$budget" --checkpoint-dir "$work/b" --checkpoint-interval-ms 1000 \
    2>"$work/brisk.err" | field events_per_s)
  rm -rf "$work/b"
  ratio=$(awk -v r="$rate" -v f="$flink" 'BEGIN { printf "%.1f", r / f }')
  ratios+=("$ratio")
  printf '| %d | %.0f | %.0f | %sx |\n' "$i" "$flink" "$rate" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo
echo "median ratio over $pairs pairs: ${median}x"
