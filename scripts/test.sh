#!/usr/bin/env bash
# Every test, as `make test` (and so CI) runs them, one step after another; each step's time is
# printed at the end, also when a step fails (the failing one is marked).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

times=()
current=""
started=$SECONDS
report() {
  local status=$?
  [ -n "$current" ] && times+=("$(printf '%6d s  %s  FAILED' $((SECONDS - step_started)) "$current")")
  echo
  echo "test steps (total $((SECONDS - started)) s):"
  printf '%s\n' "${times[@]}"
  exit "$status"
}
trap report EXIT

step() {
  current=$1
  shift
  step_started=$SECONDS
  "$@"
  times+=("$(printf '%6d s  %s' $((SECONDS - step_started)) "$current")")
  current=""
}

step "set-up (venv, libtorch, Debian packages)" bash scripts/setup.sh --test
step "cargo fmt" cargo fmt --all --check
step "cargo fmt (fuzz)" cargo fmt --manifest-path fuzz/Cargo.toml --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo clippy (fuzz)" cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
step "cargo build (tests)" cargo test --workspace --no-run
# Every test binary even after one fails: one run shows every failure.
step "cargo test" cargo test --workspace --no-fail-fast
step "python (wheel, smoke test, pytest, notebook)" bash skinlesion-py/tests/run.sh
step "fuzz smoke run" bash fuzz/run.sh 10
