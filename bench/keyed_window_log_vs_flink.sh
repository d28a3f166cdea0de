#!/usr/bin/env bash
# The KW workload with state on the log backend, beside the real Flink with RocksDB, in one run:
#   bench/keyed_window_log_vs_flink.sh EVENTS KEYS CORES [BUDGET_BYTES...]
# Every run takes checkpoints every 1 s into a fresh directory. brisk runs: the memory backend,
# then the log backend at each per-core budget (incremental checkpoints), then the smallest
# budget with full checkpoints. Flink runs shared/flink/keyed_window.sh with rocksdb.
# Prints one table row per run (events/s, ratio to Flink, checkpoint figures, peak RSS).
# BRISK_EVENTS=N runs brisk on N events instead of EVENTS: brisk runs 20-80 times as fast,
# and on the same count may end before its first 1 s checkpoint (its row then shows none).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
events="${1:?EVENTS}"; keys="${2:?KEYS}"; cores="${3:?CORES}"; shift 3
brisk_events="${BRISK_EVENTS:-$events}"
budgets=("${@:-16777216}")
(cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_window)
brisk="$root/target/release/keyed_window"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -1; }

echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F)"
echo "workload: KW, $events events (brisk: $brisk_events), $keys keys, $cores cores, checkpoints every 1 s"
rm -rf "$work/f"
flink=$("$shared/flink/keyed_window.sh" "$events" "$cores" "$keys" rocksdb 1000 "$work/f" | field events_per_s)
rm -rf "$work/f"
printf '\n| run | events/s | / Flink+RocksDB | checkpoint added p50 | whole state max | sync pause p50 | peak RSS |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
printf '| Flink 2.3, RocksDB, incremental checkpoints | %.0f | 1.0x | | | | |\n' "$flink"
run() {
  local what="$1"; shift
  rm -rf "$work/b"
  local out; out=$("$brisk" --events "$brisk_events" --keys "$keys" --cores "$cores" \
    --checkpoint-dir "$work/b" --checkpoint-interval-ms 1000 "$@")
  local rate added whole pause rss
  rate=$(echo "$out" | field events_per_s)
  added=$(echo "$out" | sed -n 's/.*added p50=\([0-9]*\).*/\1/p')
  whole=$(echo "$out" | sed -n 's/.*referred to max=\([0-9]*\).*/\1/p')
  pause=$(echo "$out" | sed -n 's/.*sync_pause_ms p50=\([0-9.]*\).*/\1/p')
  rss=$(echo "$out" | field peak_rss_mib)
  awk -v w="$what" -v r="$rate" -v f="$flink" -v a="${added:-0}" -v h="${whole:-0}" -v p="${pause:-0}" -v m="$rss" \
    'BEGIN { printf "| %s | %.0f | %.1fx | %.1f MB | %.1f MB | %.0f ms | %.0f MiB |\n", w, r, r/f, a/1e6, h/1e6, p, m }'
  echo "$out" | grep '^# log backend' >&2 || true
  rm -rf "$work/b"
}
run "brisk, memory backend (full checkpoints)" --state-backend memory
for b in "${budgets[@]}"; do
  run "brisk, log backend, $((b >> 20)) MiB/core, incremental" --state-backend log --state-memory-budget "$b"
done
run "brisk, log backend, $((budgets[0] >> 20)) MiB/core, full checkpoints" \
  --state-backend log --state-memory-budget "${budgets[0]}" --full-checkpoints
