#!/usr/bin/env bash
# Topic -> brisk (parse, key_by, ValueState) -> topic on the test broker
# (tansu), beside the broker's own produce and consume rates in the same run.
#
#   bench/kafka_pipeline.sh [LINES] [CORES] [PORT]
#
# 1. `brisk kafka produce-features` writes LINES lines into a fresh topic
#    (4 partitions): the broker's produce rate.
# 2. `brisk kafka consume` reads them back: the broker's consume rate.
# 3. `feature_pipeline --bounded` reads them, keeps per-user state and
#    writes LINES features to another topic (at least once, 1 s checkpoints):
#    records/s end to end, from its own elapsed time.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-200000}
CORES=${2:-2}
PORT=${3:-19492}
BROKERS="127.0.0.1:$PORT"
run=$(date +%s)
IN="bench-in-$run"
OUT="bench-out-$run"

cargo build --release -q -p brisk-tools --example feature_pipeline -p brisk
tools/test-broker.sh start "$PORT"
trap 'tools/test-broker.sh stop "$PORT"' EXIT
BRISK=target/release/brisk
chk=$(mktemp -d)

produce=$($BRISK kafka produce-features --brokers "$BROKERS" --topic "$IN" --lines "$LINES" --partitions 4 --users 10000 2>&1 | tail -1)
consume=$($BRISK kafka consume --brokers "$BROKERS" --topic "$IN" --count "$LINES" 2>&1 | tail -1)
$BRISK kafka produce-features --brokers "$BROKERS" --topic "$OUT" --lines 0 --partitions 4 >/dev/null 2>&1
pipeline=$(target/release/examples/feature_pipeline --brokers "$BROKERS" --input-topic "$IN" --output-topic "$OUT" \
  --bounded --cores "$CORES" --checkpoint-dir "$chk" --checkpoint-interval-ms 1000 2>&1 >/dev/null | tail -1)
rm -rf "$chk"
echo "broker:   $produce"
echo "broker:   $consume"
echo "pipeline: $pipeline"
secs=$(echo "$pipeline" | sed -E 's/.* in ([0-9.]+) s$/\1/')
echo "kafka_pipeline lines=$LINES cores=$CORES secs=$secs records_per_s=$(awk -v n="$LINES" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')"
