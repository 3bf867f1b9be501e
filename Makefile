# The two entry points of the README. Each one does all set-up it needs on a fresh machine.
.PHONY: setup setup-test run test

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

# The HTTP server with the shipped model on http://localhost:5001 (Ctrl-C stops it).
run: setup
	cargo run --release -p skinlesion-server -- --model models/skinlesion-v1.json

# Every test: formatting, lints, the whole workspace's tests and doctests, then the Python
# package (wheel build, fresh-venv smoke test, pytest, the example notebook).
test: setup-test
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	bash skinlesion-py/tests/run.sh
