# pgms — common tasks. `make demo` and `make test` are the two commands the
# README starts with; both work on a fresh machine with Go and PostgreSQL.

GO       ?= go
BIN      := bin/pgms
DEMO_DIR := .demo
# Parallel test packages each start their own servers; two at a time suits a
# 2-core machine.
TEST_P   ?= 2

.PHONY: docs soak all build demo demo-stop test test-short test-matrix pg-versions vet bench bench-discovery bench-plan bench-rebalance bench-move clean

all: build

# The commit pgms version reports: a build with -buildvcs=false, or from an
# exported tree, embeds none.
COMMIT   := $(shell git rev-parse HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "-X github.com/pgms-dev/pgms/internal/buildinfo.commit=$(COMMIT)" -o $(BIN) ./cmd/pgms

## demo: local throwaway servers, an example topology, plan and apply
demo: build
	@scripts/demo.sh "$(DEMO_DIR)"

## demo-stop: stop the demo servers and remove their directory
demo-stop:
	$(GO) run ./internal/demo stop -dir "$(DEMO_DIR)"

## test: every test, against real PostgreSQL servers started by the tests
test:
	@scripts/check-postgres.sh
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above" && exit 1)
	$(GO) vet ./...
	$(GO) vet -tags testcontainers ./internal/pgtest
	PGMS_REQUIRE_POSTGRES=1 $(GO) test -p $(TEST_P) -count=1 -timeout 30m ./...

test-short:
	$(GO) test -short -count=1 ./...

# Majors for test-matrix and the packages it runs on each; see the README's
# "Supported PostgreSQL versions".
PG_VERSIONS    ?= 13 14 15 16 17 18
MATRIX_PKGS    ?= ./sql ./state ./executor ./executor/asused ./cmd/pgms

## pg-versions: install the pinned PostgreSQL builds of PG_VERSIONS (cached)
pg-versions:
	@scripts/pg-versions.sh install $(PG_VERSIONS)

## test-matrix: the version-sensitive packages on every major of PG_VERSIONS
test-matrix: pg-versions
	$(GO) run ./internal/testmatrix -p $(TEST_P) -versions "$(PG_VERSIONS)" $(MATRIX_PKGS)

## docs: regenerate the command reference of docs/cli (Markdown and man pages)
docs:
	$(GO) test ./cmd/pgms -run TestDocs -count=1 -update

## bench: the benchmarks that print numbers with their baselines
bench: bench-discovery bench-plan bench-rebalance bench-move

# DISCOVERY_ARGS, e.g. "-alternatives" or "-binary", tunes the discovery benchmark.
bench-discovery:
	$(GO) run ./internal/bench/discovery $(DISCOVERY_ARGS)

bench-plan:
	$(GO) run ./internal/bench/plan

bench-rebalance:
	$(GO) run ./internal/bench/rebalance

## soak: the fault schedule for SOAK_DURATION (default 10m): applies of 30
## moves under write load while servers stop, sessions die, other pgms runs
## interfere and pgms is killed; prints faults, moves, writes, losses.
SOAK_DURATION ?= 10m
soak:
	$(GO) run ./internal/bench/soak -duration $(SOAK_DURATION) $(SOAK_ARGS)

# MOVE_ARGS, e.g. "-size 400MB -moves 3", tunes the move benchmark.
bench-move:
	$(GO) run ./internal/bench/move $(MOVE_ARGS)

clean:
	rm -rf bin
