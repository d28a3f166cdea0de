#!/usr/bin/env bash
# Regenerates the Nexmark fixtures with the real Flink (shared/flink):
#   tests/nexmark/generate.sh
# 1. brisk's generator writes the inputs (deterministic: the test writes them again):
#      nexmark --generate-to input --events 10000 --event-rate 200     (50 s of event time)
#      nexmark --generate-to input-slow --events 10000 --event-rate 1  (q14's hours 0 to 2)
# 2. Flink SQL (queries/qN.sql over ddl.sql, flink_sql.py) computes each query's final rows:
#      expected/qN.csv, and expected/q14-slow.csv.
# Flink reads copies without the header row (its CSV format cannot skip one).
# Needs Java 17 and python3; about 15 s per query. CI never runs this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../flink-env.sh"
(cd "$root" && cargo build --release -q -p brisk-bench --bin nexmark)
nexmark="$root/target/release/nexmark"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for spec in "input 200" "input-slow 1"; do
  read -r name rate <<<"$spec"
  "$nexmark" --generate-to "$work/$name" --events 10000 --event-rate "$rate" >/dev/null
  mkdir -p "$work/$name-flink"
  for t in person auction bid; do tail -n +2 "$work/$name/$t.csv" > "$work/$name-flink/$t.csv"; done
done
mkdir -p "$here/expected"
run() { # query input output
  "$home/venv/bin/python" "$here/flink_sql.py" "$here/ddl.sql" "$here/queries/$1.sql" "$work/$2-flink" \
    2> >(grep -v -E 'WARN|SLF4J|^\s*$' >&2) > "$here/expected/$3.csv"
  echo "== $3: $(wc -l < "$here/expected/$3.csv") rows"
}
for q in q0 q1 q2 q3 q4 q5 q7 q8 q9 q11 q14; do run "$q" input "$q"; done
run q14 input-slow q14-slow
echo "java.util.Random traces"
java "$here/JavaRandomTrace.java" > "$here/java_random.txt"
