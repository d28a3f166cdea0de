#!/usr/bin/env bash
# brisk's one test entry point: the README's test command, and what CI runs
# (.ci/run calls this). Installs what a fresh Debian machine lacks, then
# checks formatting and lints and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# glommio's build script needs git and a C compiler; pkg-config for -sys crates.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust 1.95 or newer (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The Kafka test broker (tansu, ~10-15 min to build once, then cached) builds
# in the background while the workspace compiles; tests/kafka_broker.rs
# waits for it. In this script a broker that cannot be built fails the run.
mkdir -p target
tools/test-broker.sh install >target/tansu-install.log 2>&1 &
export BRISK_REQUIRE_BROKER=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== web UI in headless Chromium"
tools/ui-test.sh target/ui/brisk-ui.png
