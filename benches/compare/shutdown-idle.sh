#!/usr/bin/env bash
# How long `serve echo-upper --dispatch reactor` takes to exit after SIGTERM
# while it holds 10,000 idle connections (issue 10's target: within 1 s).
#
#   benches/compare/shutdown-idle.sh [CONNECTIONS] [DISPATCH]
set -euo pipefail
cd "$(dirname "$0")/../.."
connections="${1:-10000}"
dispatch="${2:-reactor}"
cargo build --release --quiet --features cli --bin socketserver
bin=target/release/socketserver
out=$(mktemp -d)
trap 'kill "$bench" 2>/dev/null || true; rm -rf "$out"' EXIT
ulimit -n "$(ulimit -Hn)"
"$bin" serve echo-upper --bind tcp://127.0.0.1:0 --dispatch "$dispatch" \
  --max-connections $((connections + 100)) >"$out/serve.out" 2>"$out/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q "listening on" "$out/serve.out" && break; sleep 0.1; done
url=$(grep -o "tcp://[0-9.:]*" "$out/serve.out" | head -1)
"$bin" bench echo-upper --connect "$url" --mode hold -c "$connections" --duration 60 \
  --sources 127.0.0.1,127.0.0.2 >"$out/bench.out" 2>&1 &
bench=$!
# Wait until the server holds them all (its descriptors).
for _ in $(seq 1 300); do
  [ "$(ls /proc/$server/fd | wc -l)" -ge "$connections" ] && break
  sleep 0.1
done
echo "server holds $(ls /proc/$server/fd | wc -l) descriptors"
start=$(date +%s.%N)
kill -TERM "$server"
status=0
wait "$server" || status=$?
end=$(date +%s.%N)
echo "exit status $status, $(python3 -c "print(round($end - $start, 3))") s after SIGTERM"
