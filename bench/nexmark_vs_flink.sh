#!/usr/bin/env bash
# Nexmark side by side: brisk and the real Flink (shared/flink) on the same machine, over
# the same CSV files, in one go.
#   bench/nexmark_vs_flink.sh EVENTS [CORES] [QUERY...]      (default: 2 cores, every query)
# brisk's generator writes EVENTS events as person/auction/bid.csv; each query then runs
#   - in brisk:  nexmark --query qN --input-dir DIR --cores CORES (discarding results), and
#   - in Flink:  shared/flink/sql.sh over the same files (header rows cut), parallelism
#                CORES, the query of tests/nexmark/queries/ inserted into a blackhole table.
# Both parse the files. Flink's time includes its JVM and mini cluster start: the script
# also times Flink's q0 on empty files once and reports the ratio with that start
# subtracted too.
# Prints one table row per query: brisk secs, Flink secs, Flink secs less start, ratios.
# A query Flink fails is reported as failed, with Flink's last "Caused by" (with its heap
# state backend, q7 and q9 fail at 20 M events: the TaskManager misses its heartbeats).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
events="${1:?usage: nexmark_vs_flink.sh EVENTS [CORES] [QUERY...]}"
cores="${2:-2}"
shift $(( $# >= 2 ? 2 : 1 ))
queries=("$@")
[ ${#queries[@]} -gt 0 ] || queries=(q0 q1 q2 q3 q4 q5 q7 q8 q9 q11 q12 q14)
(cd "$root" && cargo build --release -q -p brisk-bench --bin nexmark)
nexmark="$root/target/release/nexmark"
work="${BRISK_BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
data="$work/data" flink_data="$work/flink-data" empty="$work/empty"
if [ ! -f "$data/bid.csv" ] || [ "$(cat "$data/events" 2>/dev/null)" != "$events" ]; then
  "$nexmark" --generate-to "$data" --events "$events" | tail -1
  echo "$events" > "$data/events"
  mkdir -p "$flink_data" "$empty"
  for t in person auction bid; do
    tail -n +2 "$data/$t.csv" > "$flink_data/$t.csv"
    : > "$empty/$t.csv"
  done
fi
export BRISK_FLINK_PARALLELISM="$cores"
# The blackhole sink's columns per query (an INSERT, so that sql.sh waits for the job: it
# does not wait for a CREATE TABLE ... AS SELECT).
declare -A sink_columns=(
  [q0]='auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3), extra VARCHAR'
  [q1]='auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), `dateTime` TIMESTAMP(3), extra VARCHAR'
  [q2]='auction BIGINT, price BIGINT'
  [q3]='name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT'
  [q4]='category BIGINT, avg_final BIGINT'
  [q5]='auction BIGINT, num BIGINT'
  [q7]='auction BIGINT, price BIGINT, bidder BIGINT, `dateTime` TIMESTAMP(3), extra VARCHAR'
  [q8]='id BIGINT, name VARCHAR, starttime TIMESTAMP(3)'
  [q9]='id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR, auction BIGINT, bidder BIGINT, price BIGINT, bid_dateTime TIMESTAMP(3), bid_extra VARCHAR'
  [q11]='bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)'
  [q12]='bidder BIGINT, bid_count BIGINT, window_start TIMESTAMP_LTZ(3), window_end TIMESTAMP_LTZ(3)'
  [q14]='auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR, c_counts BIGINT'
)
flink_run() { # query dir -> seconds
  local sql="$work/$1.sql"
  sed "s|\${DIR}|$2|g" "$root/tests/nexmark/ddl.sql" > "$sql"
  echo "CREATE TABLE sink (${sink_columns[$1]}) WITH ('connector' = 'blackhole');" >> "$sql"
  if [ "$1" = q12 ]; then
    echo "CREATE VIEW B AS SELECT *, PROCTIME() AS p_time FROM bid;" >> "$sql"
    echo "INSERT INTO sink SELECT bidder, count(*) AS bid_count, window_start, window_end FROM TABLE(TUMBLE(TABLE B, DESCRIPTOR(p_time), INTERVAL '10' SECOND)) GROUP BY bidder, window_start, window_end;" >> "$sql"
  else
    local body
    body="$(grep -v '^--' "$root/tests/nexmark/queries/$1.sql")"
    printf "INSERT INTO sink\n%s\n" "$body" >> "$sql"
  fi
  local start end
  start=$(date +%s.%N)
  if ! "$shared/flink/sql.sh" "$sql" >/dev/null 2>"$work/$1.flink.log"; then
    echo "# Flink failed on $1 after $(echo "$(date +%s.%N) - $start" | bc) s: $(grep -o 'Caused by: [^:]*: [^.]*' "$work/$1.flink.log" | tail -1); see $work/$1.flink.log" >&2
    echo failed
    return 0
  fi
  end=$(date +%s.%N)
  flink_gone
  echo "$end - $start" | bc
}
# Flink's JVM outlives sql.sh by a second or two, unmapping its heap: wait until it has
# exited, so that it does not share the CPUs with the next brisk run.
flink_gone() {
  local pattern="${BRISK_FLINK_HOME:-$HOME/.cache/brisk-flink}" polls=0
  while pgrep -f "$pattern" >/dev/null && [ $polls -lt 600 ]; do
    sleep 0.1
    polls=$((polls + 1))
  done
  [ $polls -lt 600 ] || echo "# Flink's processes still run 60 s after its job ended" >&2
}
# brisk's seconds for a query: the median of three runs (each is a few seconds; Flink's
# single run lasts tens of seconds, which evens out its own noise).
brisk_run() { # query -> last line of the median run
  local lines=()
  for _ in 1 2 3; do
    cat "$data"/*.csv > /dev/null
    lines+=("$("$nexmark" --query "$1" --input-dir "$data" --cores "$cores" 2>/dev/null | tail -1)")
  done
  printf '%s\n' "${lines[@]}" | sort -t= -k5 -g | sed -n 2p
}
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, $(uname -r), events=$events cores=$cores"
flink_start="$(flink_run q0 "$empty")"
echo "# Flink start (q0 on empty files): ${flink_start} s"
printf "| query | events read | brisk s (median of 3) | brisk events/s | Flink s | Flink s less start | Flink events/s | ratio | ratio less start |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
for q in "${queries[@]}"; do
  # Both engines read from a warm page cache: Flink runs just after brisk read the files,
  # and Flink's heap may have pushed them out before brisk's next query.
  line="$(brisk_run "$q")"
  read_events="$(sed -E 's/.* events=([0-9]+).*/\1/' <<<"$line")"
  brisk_s="$(sed -E 's/.* secs=([0-9.]+).*/\1/' <<<"$line")"
  flink_s="$(flink_run "$q" "$flink_data")"
  if [ "$flink_s" = failed ]; then
    printf "| %s | %s | %.3f | %.0f | failed | | | | |\n" "$q" "$read_events" "$brisk_s" "$(echo "$read_events / $brisk_s" | bc -l)"
    continue
  fi
  less=$(echo "$flink_s - $flink_start" | bc)
  printf "| %s | %s | %.3f | %.0f | %.1f | %.1f | %.0f | %.1f× | %.1f× |\n" "$q" "$read_events" "$brisk_s" \
    "$(echo "$read_events / $brisk_s" | bc -l)" "$flink_s" "$less" "$(echo "$read_events / $less" | bc -l)" \
    "$(echo "$flink_s / $brisk_s" | bc -l)" "$(echo "$less / $brisk_s" | bc -l)"
done
