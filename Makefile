# The two entry points of the README. Each one does all set-up it needs on a fresh machine.
.PHONY: setup run test

setup:
	bash scripts/setup.sh

# The HTTP server with the shipped model (it finds models/ itself) on http://localhost:5001
# (Ctrl-C stops it).
run: setup
	cargo run --release -p skinlesion-server

# Every test: formatting, lints, the whole workspace's tests and doctests, the Python package
# (wheel build, fresh-venv smoke test, pytest, the example notebook), then a fuzz smoke run
# (a few seconds per target; `bash fuzz/run.sh` alone fuzzes for minutes). scripts/test.sh runs
# them in turn, set-up first, and prints each step's time.
test:
	bash scripts/test.sh
