#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints, per target, the
# executions, the corpus size and the findings (crash, leak, timeout or
# out-of-memory inputs that libFuzzer saved under artifacts/TARGET/).
#
#   fuzz/run.sh                 # 60 s per target
#   fuzz/run.sh 10              # 10 s per target
#   FUZZ_SECONDS=600 fuzz/run.sh frames json_header   # some targets only
#
# Works on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the
# sanitizer flags); installs cargo-fuzz from crates.io when it is missing.
# A single allocation over 64 MiB counts as a finding (-malloc_limit_mb):
# no parser may allocate what an input merely claims. Exits 1 when any
# target has findings; every finding must become a regression test in the
# main test suite: fix the bug, then copy the input from artifacts/TARGET/ to
# regressions/TARGET/ (tests/fuzz_regressions.rs replays that folder).
set -uo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io..."
  cargo install cargo-fuzz --locked || exit 1
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "building ${#targets[@]} targets..."
cargo fuzz build -O >/dev/null 2>build.log || { cat build.log; exit 1; }

mkdir -p logs
summary=()
total_findings=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  # Seeds (committed) start the corpus; the corpus itself is not committed.
  if [[ -d "seeds/$target" ]]; then
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  fi
  before=$(find "artifacts/$target" -type f | wc -l)
  echo "== $target: ${seconds} s"
  cargo fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
    -max_len=8192 -print_final_stats=1 >"logs/$target.log" 2>&1
  status=$?
  runs=$(grep -oE '^Done [0-9]+ runs' "logs/$target.log" | awk '{print $2}' | tail -1)
  [[ -z "$runs" ]] && runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "logs/$target.log" | grep -oE '[0-9]+$' | tail -1)
  after=$(find "artifacts/$target" -type f | wc -l)
  findings=$((after - before))
  if [[ $status -ne 0 && $findings -eq 0 ]]; then
    findings=1 # a failure that left no artifact: see the log
  fi
  corpus=$(find "corpus/$target" -type f | wc -l)
  total_findings=$((total_findings + findings))
  line=$(printf '%-14s %12s executions %6s corpus  %3s findings' "$target" "${runs:-?}" "$corpus" "$findings")
  echo "$line"
  if [[ $findings -gt 0 ]]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "logs/$target.log" | head -5
    echo "   (fix it, then: cp artifacts/$target/<input> regressions/$target/)"
  fi
  summary+=("$line")
done

echo
echo "fuzz summary (${seconds} s per target, $(date -u +%Y-%m-%dT%H:%MZ)):"
printf '%s\n' "${summary[@]}"
echo "total findings: $total_findings"
[[ $total_findings -eq 0 ]]
