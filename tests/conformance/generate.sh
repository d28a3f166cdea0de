#!/usr/bin/env bash
# Regenerates the golden outputs of tests/conformance with the real Flink (shared/flink):
#   tests/conformance/generate.sh
# For every case directory (one with `args` and `input.csv`), runs flink/WindowCsv.java on the
# input and writes expected.csv and expected_late.csv beside it. `args` holds one line:
#   SPEC OUT_OF_ORDERNESS_MS ALLOWED_LATENESS_MS EVERY_EVENT(0|1) [NAME=VALUE...]
# where NAME=VALUE is input=FILE (a further input, relative to the case), trigger=...,
# evictor=... or idleness=... (see flink/WindowCsv.java).
# Needs Java 17 and python3; CI never runs this, it compares against the committed files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../flink-env.sh"
lib="$(cat "$home/flink-lib-path")"
classes="$home/brisk-conformance-classes"
mkdir -p "$classes"
javac -nowarn -d "$classes" -cp "$lib/*" "$here/flink/WindowCsv.java" "$here/flink/ValveTraces.java"
echo "== valve_traces.txt: Flink's StatusWatermarkValve on seeded random inputs"
java -cp "$lib/*:$classes" ValveTraces "$here/valve_traces.txt"
for dir in "$here"/cases/*/; do
  read -r spec ooo lateness every extra < "$dir/args"
  echo "== $(basename "$dir"): $spec ooo=$ooo lateness=$lateness every_event=$every $extra"
  opts=()
  for nv in $extra; do
    case "$nv" in
      input=*) opts+=("input=$dir/${nv#input=}") ;;
      *) opts+=("$nv") ;;
    esac
  done
  java -Xmx2g -Dlog4j2.level=ERROR --add-opens java.base/java.util=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED \
    -cp "$lib/*:$classes" WindowCsv "$dir/input.csv" "$spec" "$ooo" "$lateness" "$every" \
    "$dir/expected.csv" "$dir/expected_late.csv" "${opts[@]}" 2>/dev/null
  echo "   $(wc -l < "$dir/expected.csv") rows, $(wc -l < "$dir/expected_late.csv") late"
done
