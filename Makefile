# The two commands a newcomer needs are `make blackfriday` and `make test`;
# the rest are building blocks.
CARGO ?= cargo

.PHONY: all deps build release test fmt-check clippy unit blackfriday selfcheck fleet fleet-selftest distributed bench bench-merge bench-cluster bench-harness bench-shop bench-sticky clean

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --workspace

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --all-targets

# rustfmt, clippy and headless Chromium (for the report's browser test),
# installed if missing (scripts/install-deps.sh).
deps:
	./scripts/install-deps.sh

# fmt check, clippy and the whole test suite, as CI runs it.
test: deps
	$(MAKE) fmt-check clippy unit

# The main job: Black Friday single vs cluster with faults, audit and report, then the self-check.
blackfriday: release
	./scripts/blackfriday.sh

# Can the harness still see? Three short runs: the correct reference server
# must pass, two deliberately broken ones must fail (blackfriday runs it too).
selfcheck: release
	./scripts/selfcheck.sh

# A fleet on one machine (issue 16, docs/FLEET.md): Redis, HAProxy and two
# reference clusters as two hosts, through a worker kill, a host-by-host
# deploy, a host kill and a Redis restart; about 40 s. Needs haproxy and
# redis-server (make deps).
fleet: release
	./scripts/fleet.sh

# fleet-deploy.sh's abort paths (a host that never drains, one that never
# comes back) on the same fleet, without traffic; about 15 s.
fleet-selftest: release
	./scripts/fleet.sh --selftest

# The sharded-run contract on loopback (docs/DISTRIBUTED.md): 3 shard
# processes + 1 chaos runner on one start instant against the reference
# cluster through a rolling restart and a SIGKILL, then one merge; ~15 s.
distributed: release
	./scripts/distributed.sh

bench: bench-cluster bench-shop bench-harness bench-sticky bench-merge

bench-cluster: release
	./scripts/bench-cluster.sh

clean:
	$(CARGO) clean

bench-harness: release
	./scripts/bench-harness.sh

bench-shop: release
	./scripts/bench-shop.sh

bench-sticky: release
	./scripts/bench-sticky.sh

# Merge cost of 2, 4 and 8 shards of a 1,000,000-request run (synthesized
# shard folders; docs/PERFORMANCE.md, "Merging shards").
bench-merge: release
	$(CARGO) build --release -p harness --example synth_shards
	./scripts/bench-merge.sh
