#!/usr/bin/env bash
# Regenerates the YSB fixture with the real Flink (shared/flink):
#   tests/ysb/generate.sh
# 1. brisk's generator writes the inputs (deterministic: the test writes them again):
#      ysb --generate-to input --events 30000 --event-rate 1000      (30 s of event time)
# 2. Flink SQL (query.sql over ddl.sql, run by tests/nexmark/flink_sql.py) computes the
#    final rows: expected/views.csv.
# Needs Java 17 and python3; about 20 s. CI never runs this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../flink-env.sh"
(cd "$root" && cargo build --release -q -p brisk-bench --bin ysb)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/target/release/ysb" --generate-to "$work/input" --events 30000 --event-rate 1000 >/dev/null
mkdir -p "$here/expected"
"$home/venv/bin/python" "$root/tests/nexmark/flink_sql.py" "$here/ddl.sql" "$here/query.sql" "$work/input" \
  2> >(grep -v -E 'WARN|SLF4J|^\s*$' >&2) > "$here/expected/views.csv"
echo "== views: $(wc -l < "$here/expected/views.csv") rows"
