# The two entry points of the README. Each one does all set-up it needs on a fresh machine.
.PHONY: setup setup-test run test

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

# The HTTP server with the shipped model (it finds models/ itself) on http://localhost:5001
# (Ctrl-C stops it).
run: setup
	cargo run --release -p skinlesion-server

# Every test: formatting, lints, the whole workspace's tests and doctests, the Python package
# (wheel build, fresh-venv smoke test, pytest, the example notebook), then a fuzz smoke run
# (a few seconds per target; `bash fuzz/run.sh` alone fuzzes for minutes).
test: setup-test
	cargo fmt --all --check
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	cargo test --workspace
	bash skinlesion-py/tests/run.sh
	bash fuzz/run.sh 10
