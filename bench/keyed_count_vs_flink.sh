#!/usr/bin/env bash
# Runs brisk's keyed_count and the same job in the real Flink (bench/flink/KeyedCountBench.java)
# on this machine in one go, and prints a ratio table.
#   bench/keyed_count_vs_flink.sh [EVENTS] [KEYS] [REPEATS]
# Needs Java 17 and python3 (Flink comes from shared/flink/setup.sh, cached).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
events="${1:-20000000}"; keys="${2:-10000}"; repeats="${3:-3}"
home="${BRISK_FLINK_HOME:-$HOME/.cache/brisk-flink}"
[ -f "$home/flink-lib-path" ] || "$shared/flink/setup.sh" >/dev/null
lib="$(cat "$home/flink-lib-path")"
classes="$home/brisk-bench-classes"
mkdir -p "$classes"
src="$root/bench/flink/KeyedCountBench.java"
if [ ! -f "$classes/KeyedCountBench.class" ] || [ "$src" -nt "$classes/KeyedCountBench.class" ]; then
  javac -nowarn -d "$classes" -cp "$lib/*" "$src"
fi
(cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_count)
brisk="$root/target/release/keyed_count"
rate() { sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' | sort -n | tail -1; }
best() { # best of $repeats runs of a command
  for _ in $(seq "$repeats"); do "$@"; done | tee -a /dev/stderr | rate
}
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F)"
echo "workload: $events KW events, $keys keys, keyed count+sum per event, discarding sink; best of $repeats"
declare -A b f
for c in 1 2; do
  b[$c]=$(best "$brisk" --events "$events" --keys "$keys" --cores "$c")
  f[$c]=$(best java -Xmx4g -Dlog4j2.level=ERROR --add-opens java.base/java.util=ALL-UNNAMED \
      --add-opens java.base/java.lang=ALL-UNNAMED -cp "$lib/*:$classes" KeyedCountBench "$events" "$c" "$keys" 2>/dev/null)
done
l=$(best "$brisk" --events "$events" --keys "$keys" --limit)
printf '\n| cores | brisk events/s | Flink events/s | brisk / Flink | brisk per core |\n|---|---|---|---|---|\n'
for c in 1 2; do
  awk -v c="$c" -v b="${b[$c]}" -v f="${f[$c]}" 'BEGIN { printf "| %d | %.1f M | %.2f M | %.1fx | %.1f M |\n", c, b/1e6, f/1e6, b/f, b/c/1e6 }'
done
awk -v b1="${b[1]}" -v b2="${b[2]}" -v l="$l" 'BEGIN { printf "\nscaling 2 cores / 1 core: %.2fx; plain-loop limit %.1f M/s; brisk 1 core / limit: %.2f\n", b2/b1, l/1e6, b1/l }'
