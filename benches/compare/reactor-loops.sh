#!/usr/bin/env bash
# The reactor's ways to reach its event loops, against tokio, echo-upper
# ping-pong, the load generator on the same machine: two loops fed by one
# listener that deals connections in turn (the default on 2 cores), two
# loops each accepting on its own SO_REUSEPORT listener
# (--listener-per-loop), and one loop (what a loop that owns its
# connections costs when the client needs a core too). Rounds interleaved;
# prints one line per point.
#
#   benches/compare/reactor-loops.sh [ROUNDS] [CONNECTIONS...]
#   (run.py builds the peers first; connections default to 16 128 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(16 128 1000)
bin=target/release/socketserver
tokio=target/compare-peers/release/tokio-echo
cargo build --release --quiet --features cli --bin socketserver
[ -x "$tokio" ] || { echo "build the peers first: python3 benches/compare/run.py --smoke --no-doc"; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
point() { # CONNECTIONS NAME COMMAND...
  local connections=$1 name=$2
  shift 2
  "$@" >"$out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 50); do grep -q "listening on tcp" "$out" && break; sleep 0.1; done
  local url
  url=$(grep -o "tcp://[0-9.:]*" "$out" | head -1)
  "$bin" bench echo-upper --connect "$url" -c "$connections" -d 3 --warmup 1 \
    --watch-pid "$pid" --json | python3 -c "
import json, sys
j = json.load(sys.stdin)
print('%-6s %-10s %8.0f req/s %5.2f us/req (server CPU) p99 %7.0f us' % (
    'c$connections', '$name', j['requests_per_sec'], j['server_cpu_us_per_request'],
    j['latency_us']['p99']))"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
for connections in "${counts[@]}"; do
  for _ in $(seq 1 "$rounds"); do
    point "$connections" reactor-2 "$bin" serve echo-upper --bind tcp://127.0.0.1:0 --dispatch reactor --reactor-threads 2
    point "$connections" per-loop-2 "$bin" serve echo-upper --bind tcp://127.0.0.1:0 --dispatch reactor --reactor-threads 2 --listener-per-loop
    point "$connections" reactor-1 "$bin" serve echo-upper --bind tcp://127.0.0.1:0 --dispatch reactor --reactor-threads 1
    point "$connections" tokio "$tokio"
  done
done
