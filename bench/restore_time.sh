#!/usr/bin/env bash
# Restore time of the log backend: KW with one long window (so state only grows), killed with
# SIGKILL once checkpoint CHK has completed, then restored from the newest complete checkpoint
# with the page cache dropped first.
#   bench/restore_time.sh KEYS CORES [CHK] [RUNS]
# Each of RUNS restores (default 2) starts from a fresh copy of the killed run's checkpoint
# directory (a restored job takes checkpoints of its own and retires older ones). Prints the
# checkpoint's size and each restore's read and rebuild times (the job's `# restored` line),
# then reads fresh copies of the checkpoint cold with `cat`, RUNS times, for the disk's read
# bandwidth that the goal (restore <= size / bandwidth + 1 s) is measured against.
# Dropping the page cache needs root; without it the restores read from a warm cache, and the
# script says so.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
keys="${1:?KEYS}"; cores="${2:?CORES}"; chk="${3:-3}"; runs="${4:-2}"
# KW_BIN=PATH runs that keyed_window binary instead (A/B runs of two builds).
bin="${KW_BIN:-$root/target/release/keyed_window}"
[ -n "${KW_BIN:-}" ] || (cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_window)
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
flags=(--keys "$keys" --cores "$cores" --window-ms 1000000 --state-backend log
  --state-memory-budget 268435456)

echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%FT%TZ)"
echo "workload: KW, $keys keys, $cores cores, one window of 1,000,000 ms, log backend,"
echo "          256 MiB/core, checkpoints every 10 s; killed once chk-$chk is complete"
"$bin" --events 2000000000 "${flags[@]}" --checkpoint-dir "$work/cp" \
  --checkpoint-interval-ms 10000 >"$work/run.out" 2>&1 &
pid=$!
# A checkpoint is complete once its manifest is written.
until [ -f "$work/cp/chk-$chk/_manifest" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the job ended before chk-$chk completed:" >&2
    tail -5 "$work/run.out" >&2
    exit 1
  fi
  sleep 1
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
echo "checkpoint directory: $(du -sh "$work/cp" | cut -f1)"

for run in $(seq 1 "$runs"); do
  rm -rf "$work/copy" && cp -a "$work/cp" "$work/copy"
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then
    echo 3 >/proc/sys/vm/drop_caches
  else
    echo "note: cannot drop the page cache (not root): run $run reads a warm cache"
  fi
  "$bin" --events 1 "${flags[@]}" --checkpoint-dir "$work/copy" --restore latest 2>&1 \
    | grep -E '^# restored' | tee "$work/restored" | sed "s/^/run $run: /"
done
restored_bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$work/restored")

# The goal is relative to the disk: restore <= state size / read bandwidth + 1 s. Read a fresh
# copy of the same checkpoint cold, RUNS times, as the restores did.
for run in $(seq 1 "$runs"); do
  rm -rf "$work/copy" && cp -a "$work/cp" "$work/copy"
  sync
  [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
  bytes=$(find "$work/copy" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}')
  start=$(date +%s.%N)
  find "$work/copy" -type f -exec cat {} + >/dev/null
  secs=$(echo "$(date +%s.%N) - $start" | bc -l)
  bw=$(echo "$bytes / $secs" | bc -l)
  printf 'read %d: %d bytes in %.2f s (%.2f GB/s); goal for the %d bytes restored: %.2f s\n' \
    "$run" "$bytes" "$secs" "$(echo "$bw / 1000000000" | bc -l)" "$restored_bytes" \
    "$(echo "$restored_bytes / $bw + 1" | bc -l)"
done
