#!/usr/bin/env bash
# Soak test (not in CI): every service of the release build, once per
# dispatch mode (threads and reactor), under 1,000 honest clients (SOAK_CLIENTS)
# and the hostile shapes of issue 14, for DURATION seconds (default 3600),
# sampling each server's RSS, threads and open descriptors from /proc every
# two seconds.
# Writes soak/out/{samples.csv,summary.txt,soak.png} and exits non-zero if
# any answer was wrong, any metric grew, or a server did not exit 0 on
# SIGTERM.
#
#   scripts/soak.sh          # one hour
#   scripts/soak.sh 60       # a one-minute smoke run
#
# Loopback only (127.0.0.1, and 127.0.1.9 as the hostile source address).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-${SOAK_SECONDS:-3600}}"
clients="${SOAK_CLIENTS:-1000}"
font="${SOAK_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}"
if [[ ! -f "$font" ]]; then
  echo "installing a font for the plot (fonts-dejavu-core)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null
fi
cargo build --release --features cli --bin socketserver
(cd soak && cargo build --release)
exec soak/target/release/socketserver-soak \
  --duration "$duration" --clients "$clients" --out soak/out \
  --program target/release/socketserver --font "$font"
