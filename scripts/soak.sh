#!/usr/bin/env bash
# Soak test (not in CI): every service of the release build under mixed
# honest and hostile load for DURATION seconds (default 600), sampling each
# server's RSS, threads and open descriptors from /proc every second.
# Writes soak/out/{samples.csv,summary.txt,soak.png} and exits non-zero if
# any answer was wrong, any metric grew, or a server did not exit 0 on
# SIGTERM.
#
#   scripts/soak.sh          # 10 minutes
#   scripts/soak.sh 30       # a 30-second smoke run
#
# Loopback only (127.0.0.1, and 127.0.0.9 as a hostile source address).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-${SOAK_SECONDS:-600}}"
font="${SOAK_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}"
if [[ ! -f "$font" ]]; then
  echo "installing a font for the plot (fonts-dejavu-core)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null
fi
cargo build --release --bin socketserver
(cd soak && cargo build --release)
exec soak/target/release/socketserver-soak \
  --duration "$duration" --out soak/out --program target/release/socketserver --font "$font"
