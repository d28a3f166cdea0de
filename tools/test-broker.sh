#!/usr/bin/env bash
# A Kafka-compatible test broker anyone can start: tansu (crates.io), on
# loopback only, its data in a fresh SQLite file per start. (tansu 0.6.0's
# `memory://` storage loses records: 20,000 produced and acknowledged, 14,666
# to 19,993 stored; its SQLite storage keeps them all.)
#
#   tools/test-broker.sh install      build tansu once into the cache (10-15 min cold)
#   tools/test-broker.sh start PORT   install if needed, start on 127.0.0.1:PORT in the
#                                     background, return once it accepts connections
#   tools/test-broker.sh stop PORT    stop the broker started on PORT
#   tools/test-broker.sh path         print the tansu binary's path (installs if needed)
#
# The cache is $BRISK_CACHE (default ~/.cache/brisk); the broker's pid and log
# are kept in $BRISK_CACHE/broker-PORT.{pid,log}, its data in
# $BRISK_CACHE/broker-PORT/ (emptied at every start). tansu does not implement
# Kafka transactions (EndTxn), see io/src/kafka/mod.rs.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
CACHE="${BRISK_CACHE:-$HOME/.cache/brisk}"
ROOT="$CACHE/tansu-$TANSU_VERSION"
BIN="$ROOT/bin/tansu"

die() { echo "test-broker: $*" >&2; exit 1; }

install() {
  [ -x "$BIN" ] && return 0
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs)"
  mkdir -p "$CACHE"
  # One installer at a time: tests on several threads may ask at once.
  exec 9>"$CACHE/tansu.lock"
  flock 9
  if [ ! -x "$BIN" ]; then
    echo "test-broker: building tansu $TANSU_VERSION into $ROOT (once; 10-15 min on 2 cores)" >&2
    CARGO_TARGET_DIR="$CACHE/tansu-target" cargo install tansu --version "$TANSU_VERSION" --locked \
      --features dynostore,libsql --root "$ROOT" >&2 \
      || die "cargo install tansu $TANSU_VERSION failed (see above)"
    rm -rf "$CACHE/tansu-target"
  fi
  flock -u 9
}

port_arg() {
  [ $# -ge 1 ] || die "missing PORT (e.g. tools/test-broker.sh start 19092)"
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "PORT '$1' is not a port number (1-65535)"
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  port_arg "$@"
  local port=$1 pidfile="$CACHE/broker-$1.pid" log="$CACHE/broker-$1.log"
  install
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && accepts "$port"; then
    echo "test-broker: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))" >&2
    return 0
  fi
  accepts "$port" && die "127.0.0.1:$port is taken by another process"
  local data="$CACHE/broker-$port"
  rm -rf "$data" && mkdir -p "$data"
  # tansu resolves the SQLite path against its working directory.
  (cd "$data" && exec setsid "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "sqlite://tansu.db" >"$log" 2>&1 < /dev/null) &
  echo $! >"$pidfile"
  # Wait for the listener: up to 30 s, in 0.1 s steps.
  for _ in $(seq 300); do
    if accepts "$port"; then
      echo "test-broker: tansu listening on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)" >&2
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$log" >&2; die "tansu exited at start (log above)"; }
    sleep 0.1
  done
  die "tansu did not accept connections on 127.0.0.1:$port within 30 s (log: $log)"
}

stop() {
  port_arg "$@"
  local pidfile="$CACHE/broker-$1.pid"
  [ -f "$pidfile" ] || { echo "test-broker: nothing started on port $1" >&2; return 0; }
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "test-broker: stopped the broker on port $1" >&2
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  path) install; echo "$BIN" ;;
  *) die "usage: tools/test-broker.sh install | start PORT | stop PORT | path" ;;
esac
