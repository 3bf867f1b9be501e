#!/usr/bin/env bash
# Soak test, one command:  bash benches/soak/run.sh
#
# The server's soak test (skinlesion-server/tests/soak.rs) on a release build, for 10 minutes by
# default: concurrency 32, mixed valid and invalid uploads to /predict and /predict/batch. It
# fails on any wrong answer, on RSS growth of 5% or more after warm-up, or on any trace of an
# upload on disk or in the logs, and prints request counts by kind and status and the RSS.
# CI runs the same test for 60 s (debug build) as part of `cargo test`.
#
# Environment: SKINLESION_SOAK_SECONDS (default 600), SKINLESION_SOAK_CONCURRENCY (default 32).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
SKINLESION_SOAK_SECONDS=${SKINLESION_SOAK_SECONDS:-600} \
  cargo test --release -p skinlesion-server --test soak -- --nocapture
