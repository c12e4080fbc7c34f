#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for $FUZZ_SECONDS (default 60) seconds on its
# committed corpus (fuzz/corpus/TARGET, read only: new inputs go to a scratch directory).
# A crash, timeout or out-of-memory in any target fails the run (non-zero exit); the input is
# kept in fuzz/artifacts/TARGET/. The last line is `fuzz: N passed, M failed`.
#
# Stable toolchain: cargo fuzz passes -Z flags, so RUSTC_BOOTSTRAP=1 is set here. No sanitizer
# (the crate denies unsafe code, so ASan adds little and halves the speed); debug assertions
# and overflow checks are on (cargo fuzz's default).
#
# Environment: FUZZ_SECONDS (per target), FUZZ_TARGETS (space-separated subset), FUZZ_JOBS
# (targets at a time, default: the number of cores),
# FUZZ_TIMEOUT (seconds one input may take, default 10), CARGO_BUILD_JOBS (as usual).
set -uo pipefail

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-60}"
per_input_timeout="${FUZZ_TIMEOUT:-10}"
all_targets=(framing rfc3164 rfc5424 journal http fail2ban_filter config feed resp)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"
build_flags=(--sanitizer none)

max_len() {
  case "$1" in
    journal | http | resp) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked; then
    echo "fuzz: cannot install cargo-fuzz"
    echo "fuzz: 0 passed, ${#targets[@]} failed"
    exit 1
  fi
fi

echo "fuzz: building ${targets[*]}"
if ! cargo fuzz build "${build_flags[@]}"; then
  echo "fuzz: build failed"
  echo "fuzz: 0 passed, ${#targets[@]} failed"
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One target: its exit status goes to $scratch/TARGET.rc, its output to TARGET.log.
run_target() {
  local target="$1" corpus="fuzz/corpus/$1"
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
  local dirs=("$scratch/$target")
  [ -d "$corpus" ] && dirs+=("$corpus")
  cargo fuzz run "${build_flags[@]}" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" \
    -timeout="$per_input_timeout" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$scratch/$target.out" 2>"$scratch/$target.log"
  echo $? >"$scratch/$target.rc"
}

# Targets run side by side, one per core (FUZZ_JOBS), so the stage takes
# ceil(targets / cores) x FUZZ_SECONDS instead of targets x FUZZ_SECONDS.
jobs="${FUZZ_JOBS:-$(nproc)}"
echo "fuzz: running ${#targets[@]} targets for ${seconds}s each, $jobs at a time"
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait

passed=0
failed=0
failed_names=()
for target in "${targets[@]}"; do
  if [ "$(cat "$scratch/$target.rc" 2>/dev/null)" = 0 ]; then
    echo "fuzz: $target passed"
    tail -n 12 "$scratch/$target.log" | grep -E '^stat::(number_of_executed_units|peak_rss_mb)' || true
    passed=$((passed + 1))
  else
    tail -n 60 "$scratch/$target.log"
    echo "fuzz: $target FAILED (inputs in fuzz/artifacts/$target/)"
    ls -1 "fuzz/artifacts/$target/" 2>/dev/null | sed 's/^/  /'
    failed=$((failed + 1))
    failed_names+=("$target")
  fi
done

[ "$failed" -gt 0 ] && echo "fuzz: failed targets: ${failed_names[*]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
