# Sourced by the fixture scripts (tests/*/generate.sh): finds the real Flink of shared/flink,
# setting it up on first use. Sets root (this repository), shared, home (Flink's venv and
# libraries) and JAVA_HOME.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${BRISK_SHARED:-$root/../shared}"
home="${BRISK_FLINK_HOME:-$HOME/.cache/brisk-flink}"
[ -f "$home/flink-lib-path" ] || "$shared/flink/setup.sh" >/dev/null
export JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}"
