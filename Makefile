# Everyday targets; each is a thin wrapper around a script or cargo.
.PHONY: fmt lint test unit quickstart cluster-up cluster-down cluster-status

fmt:
	cargo fmt --all

lint:
	cargo clippy --all-targets -- -D warnings

# The whole suite, as CI runs it.
test:
	scripts/test.sh

# Pure-logic tests only: no cluster needed.
unit:
	cargo test --lib

quickstart:
	scripts/quickstart.sh

cluster-up:
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

cluster-status:
	scripts/cluster.sh status
