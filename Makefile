# The two entry points of the README. Each one does all set-up it needs on a fresh machine.
.PHONY: setup run test

setup:
	bash scripts/setup.sh

# Classifies a real HAM10000 image with the shipped model.
run: setup
	cargo run --release -p skinlesion-core --example classify -- ../shared/data/ham10000/images/ISIC_0024306.jpg

# Every test: formatting, lints, then the whole workspace's tests and doctests.
test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
