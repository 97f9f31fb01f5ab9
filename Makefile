# The two commands a newcomer needs are `make blackfriday` and `make test`;
# the rest are building blocks.
CARGO ?= cargo

.PHONY: all deps build release test fmt-check clippy unit blackfriday selfcheck fleet fleet-selftest soak k8s-render distributed bench bench-merge bench-cluster bench-harness bench-shop bench-fleet bench-sticky clean

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
# TLS=1: the comparison over HTTPS (a throwaway certificate; TLS_RESUMPTION=0 for full handshakes).
TLS ?= 0
TLS_RESUMPTION ?= 1
blackfriday: release
	TLS=$(TLS) TLS_RESUMPTION=$(TLS_RESUMPTION) ./scripts/blackfriday.sh

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

# 30 minutes of the Black Friday mix at 60% of the cluster's capacity with a
# fault every minute; memory and descriptors of the harness and the server
# must stay flat (scripts/soak.sh, docs/PERFORMANCE.md "Soak"). Not in CI.
soak: release
	./scripts/soak.sh

# The Kubernetes manifests of a sharded run (deploy/k8s/README.md), rendered offline into
# reports/k8s-render/ for reading or `kubectl apply -f`; no cluster, no kubectl needed.
# scripts/k8s-run.sh without --render-only also applies them, waits, merges and copies
# the report out.
K8S_SHARDS ?= 3
K8S_NAMESPACE ?= harness
K8S_IMAGE ?= harness:dev
k8s-render:
	./scripts/k8s-run.sh --render-only reports/k8s-render deploy/k8s/overlays/example/scenario.json $(K8S_SHARDS) $(K8S_NAMESPACE) $(K8S_IMAGE)


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

# bench-shop plus Redis vs SQLite and the fleet (2 hosts x 1 worker on Redis
# behind HAProxy) vs one cluster of 2 workers, as ratios (issue 16).
bench-fleet: release
	STORE=fleet ./scripts/bench-shop.sh

bench-sticky: release
	./scripts/bench-sticky.sh

# Merge cost of 2, 4 and 8 shards of a 1,000,000-request run (synthesized
# shard folders; docs/PERFORMANCE.md, "Merging shards").
bench-merge: release
	$(CARGO) build --release -p harness --example synth_shards
	./scripts/bench-merge.sh
