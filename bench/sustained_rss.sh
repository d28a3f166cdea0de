#!/usr/bin/env bash
# R12 of shared/RELIABILITY.md: KW under sustained load on the log backend, with the process's
# resident set sampled throughout.
#   bench/sustained_rss.sh RATE SECS KEYS CORES BUDGET_BYTES [SAMPLE_S]
# Runs keyed_window at RATE events/s (over all cores) for SECS seconds with 1 s incremental
# checkpoints and the log backend at BUDGET_BYTES per core, its generator splits interleaved
# (contiguous ranges would hold the later splits' windows open all run: state that grows with
# the run's length, not a steady load); samples VmRSS, RssAnon and RssFile
# every SAMPLE_S seconds (default 10); prints the samples, the peak, the slope of RSS over the
# run's second half (least squares, MiB per minute) and the job's own last lines.
# KEEP_OUTPUT=FILE keeps the job's whole output (stdout and stderr).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rate="${1:?RATE}"; secs="${2:?SECS}"; keys="${3:?KEYS}"; cores="${4:?CORES}"; budget="${5:?BUDGET_BYTES}"
every="${6:-10}"
# KW_BIN=PATH runs that keyed_window binary instead (A/B runs of two builds).
bin="${KW_BIN:-$root/target/release/keyed_window}"
[ -n "${KW_BIN:-}" ] || (cd "$root" && cargo build --release -q -p brisk-bench --bin keyed_window)
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
events=$((rate * secs))
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%FT%TZ)"
echo "workload: KW at $rate events/s for $secs s ($events events), $keys keys, $cores cores,"
echo "          log backend, $((budget >> 20)) MiB/core budget, incremental checkpoints every 1 s"
"$bin" --events "$events" --keys "$keys" --cores "$cores" --rate "$rate" \
  --interleaved --state-backend log --state-memory-budget "$budget" \
  --checkpoint-dir "$work/cp" --checkpoint-interval-ms 1000 >"$work/out" 2>&1 &
pid=$!
start=$(date +%s)
printf '%8s %10s %10s %10s\n' t_s rss_mib anon_mib file_mib | tee "$work/samples"
while kill -0 "$pid" 2>/dev/null; do
  if read -r rss anon file < <(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{print r, a, f}' \
      "/proc/$pid/status" 2>/dev/null); then
    [ -n "$rss" ] && printf '%8d %10.1f %10.1f %10.1f\n' $(( $(date +%s) - start )) \
      "$(echo "$rss/1024" | bc -l)" "$(echo "$anon/1024" | bc -l)" "$(echo "$file/1024" | bc -l)" \
      | tee -a "$work/samples"
  fi
  sleep "$every"
done
wait "$pid"
awk -v cores="$cores" -v budget="$budget" 'NR > 1 { t[n] = $1; r[n] = $2; if ($2 > peak) peak = $2; n++ }
  END {
    # Least-squares slope over the second half of the samples.
    for (i = int(n / 2); i < n; i++) { m++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i] }
    slope = (m * sxy - sx * sy) / (m * sxx - sx * sx)
    printf "# peak rss %.1f MiB (budget %d MiB/core x %d cores = %d MiB); slope over the second half %.2f MiB/min (%d samples)\n",
      peak, budget / 1048576, cores, cores * budget / 1048576, slope * 60, m
  }' "$work/samples"
grep -E '^# (memory budget|at the peak|log backend|checkpoints=|peak_rss)|^keyed_window' "$work/out"
# The job's whole output (with RUST_LOG=brisk::memory=debug, each core's memory by use every 10 s).
if [ -n "${KEEP_OUTPUT:-}" ]; then cp "$work/out" "$KEEP_OUTPUT"; fi
