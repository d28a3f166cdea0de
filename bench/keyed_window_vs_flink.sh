#!/usr/bin/env bash
# The KW workload (shared/BENCHMARKS.md) in brisk and in the real Flink, on this machine, in one
# go, with a ratio table:  bench/keyed_window_vs_flink.sh [EVENTS] [REPEATS] [KEYS...]
# Flink runs through shared/flink/keyed_window.sh (hashmap state backend, no checkpoints).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
events="${1:-20000000}"; repeats="${2:-2}"; shift 2 || true
keys_list=("${@:-10000 1000000}")
(cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_window)
brisk="$root/target/release/keyed_window"
rate() { sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' | sort -n | tail -1; }
best() { for _ in $(seq "$repeats"); do "$@"; done | grep events_per_s | tee -a /dev/stderr | rate; }
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F)"
echo "workload: KW, $events events, 10 s tumbling windows, 100 ms out-of-orderness; best of $repeats"
printf '\n| keys | cores | brisk events/s | Flink events/s | brisk / Flink |\n|---|---|---|---|---|\n'
for keys in ${keys_list[*]}; do
  for c in 1 2; do
    b=$(best "$brisk" --events "$events" --keys "$keys" --cores "$c")
    f=$(best "$shared/flink/keyed_window.sh" "$events" "$c" "$keys")
    awk -v k="$keys" -v c="$c" -v b="$b" -v f="$f" 'BEGIN { printf "| %d | %d | %.2f M | %.2f M | %.1fx |\n", k, c, b/1e6, f/1e6, b/f }'
  done
done
