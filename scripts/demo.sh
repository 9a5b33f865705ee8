#!/usr/bin/env bash
# make demo: three throwaway PostgreSQL servers, an example topology, plan
# and apply; then a rebalance onto the two empty nodes, planned and applied.
# Every pgms command is printed before it runs. `make demo-stop` cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.demo}
pgms=bin/pgms

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '\n$ pgms %s\n' "$*"; "$pgms" "$@"; }

say "Starting three local PostgreSQL servers in $dir (nodes a, b, c)"
go run ./internal/demo start -dir "$dir"
# shellcheck disable=SC1091
. "$dir/env"

topology="$dir/topology"
mkdir -p "$topology"
cp examples/demo/topology.pgms.hcl "$topology/"

say "The topology: 13 shards on node a, nodes b and c empty"
run validate --config "$topology"
run plan --config "$topology"
run apply --config "$topology" --auto-approve

say "Filling the shards with rows (some shards get more than others)"
go run ./internal/demo seed -dir "$dir"
run list

say "Spreading the shards over all three nodes by weight"
run rebalance --config "$topology" --write
run plan --config "$topology"
run apply --config "$topology" --auto-approve
run list
run plan --config "$topology"
run status --config "$topology"

say "Done. The servers keep running: try pgms commands with PGMS_DSNS from $dir/env; make demo-stop removes them."
