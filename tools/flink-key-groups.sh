#!/usr/bin/env bash
# Prints golden key groups computed by the real Flink (shared/flink), for the
# table in state/src/key_group.rs. Needs Java 17; installs Flink via shared/flink/setup.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
home="${BRISK_FLINK_HOME:-$HOME/.cache/brisk-flink}"
[ -f "$home/flink-lib-path" ] || "$shared/flink/setup.sh" >/dev/null
lib="$(cat "$home/flink-lib-path")"
jshell --class-path "$(ls "$lib"/*.jar | tr '\n' ':')" -q "$root/tests/conformance/key_groups.jsh" 2>/dev/null
