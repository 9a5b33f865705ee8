package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newAllocateCommand) }

func newAllocateCommand() *cobra.Command {
	var (
		nodes      nodeFlags
		shards     rangeFlags
		migrateCmd string
		activate   string
	)
	cmd := &cobra.Command{
		Use:   "allocate --shards=N-M --dsn=DSN",
		Short: "Create new shards on a node, run the migrations and activate them",
		Long: `Allocate creates the missing shard schemas of a range on one node, runs the
migrate command, and activates the range only when the command succeeded. A
failing command leaves the new shards inactive; running allocate again after
fixing it finishes the job (every step is idempotent, so the command must be
too, as migration tools are).

The migrate command is a shell command line (/bin/sh -c). pgms never puts
values into it: the command finds the node and the range in its environment:
  PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE   the node (libpq)
  PGMS_DSN                        the node's DSN
  PGMS_SHARD_FROM, PGMS_SHARD_TO  the range
  PGMS_SCHEMAS                    the range's schema names, comma-separated
Its output is shown with a "[migrate <node>]" prefix.

When PGMS_DSNS, PGDSNS or DSNS list the cluster's nodes, allocate reads them
first and refuses to activate a shard that is active on another node.`,
		Example: `  pgms allocate --shards=5-8 --dsn postgres://admin@db2/app --migrate-cmd 'npm run migrate'
  MIGRATE_CMD=./migrate.sh pgms allocate --shard=9 --activate=no`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := shards.parse()
			if err != nil {
				return err
			}
			doActivate, err := parseYesNo("--activate", activate)
			if err != nil {
				return err
			}
			target, err := targetNode(nodes.dsns, "allocate")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			node, err := pgutil.Connect(ctx, target)
			if err != nil {
				return err
			}
			defer node.Close()

			spec := executor.AllocateSpec{
				From: from, To: to, Activate: doActivate, LibrarySchema: nodes.schema,
				Fleet: fleetFor(ctx, target, nodes.schema), Who: invocation("allocate", fmt.Sprintf("--shards=%d-%d", from, to)),
				Stdout: out, Stderr: cmd.ErrOrStderr(),
			}
			if migrateCmd != "" {
				spec.MigrateCommand = []string{"/bin/sh", "-c", migrateCmd}
				spec.Before = func(step string) {
					if step == "migrate" {
						fmt.Fprintf(out, "%s: running the migrate command for %s: %s\n", node.Name, words.ShardRange(from, to), dsn.Redact(migrateCmd))
					}
				}
			}
			res, err := executor.Allocate(ctx, node, spec)
			var migrateErr *executor.MigrateError
			if err != nil && !errors.As(err, &migrateErr) {
				return err
			}
			if len(res.Created) > 0 {
				fmt.Fprintf(out, "%s: created %s\n", node.Name, schemaList(res.Created))
			} else {
				fmt.Fprintf(out, "%s: %s already\n", node.Name, words.ShardRange(from, to)+" "+words.Plural(to-from+1, "exists", "exist"))
			}
			if err != nil {
				return err
			}
			if res.Migrated {
				fmt.Fprintf(out, "%s: migrate command succeeded in %s\n", node.Name, res.MigrateIn.Round(time.Millisecond))
			} else {
				fmt.Fprintf(out, "%s: no --migrate-cmd (or MIGRATE_CMD) given: no migration ran\n", node.Name)
			}
			switch {
			case !doActivate:
				fmt.Fprintf(out, "%s: not activated (--activate=no); new shards stay inactive\n", node.Name)
			case len(res.Activated) > 0:
				fmt.Fprintf(out, "%s: activated %s\n", node.Name, schemaList(res.Activated))
			default:
				fmt.Fprintf(out, "%s: %s active already\n", node.Name, words.ShardRange(from, to)+" "+words.Plural(to-from+1, "was", "were"))
			}
			return nil
		},
	}
	nodes.add(cmd)
	shards.add(cmd, "to allocate")
	cmd.Flags().StringVar(&migrateCmd, "migrate-cmd", envOr("MIGRATE_CMD", ""), "shell command that migrates the new shards, run before activation ($MIGRATE_CMD)")
	cmd.Flags().StringVar(&activate, "activate", "yes", "activate the shards once the migrate command succeeded: yes or no")
	return cmd
}

// fleetFor is every node an activation on target is checked against.
func fleetFor(ctx context.Context, target, librarySchema string) *state.Fleet {
	listed, _ := dsn.FromEnv()
	return runner.FleetAround(ctx, target, librarySchema, listed)
}

// schemaList names a few schemas, or counts many and names the first and
// last.
func schemaList(schemas []string) string {
	if len(schemas) > 4 {
		return fmt.Sprintf("%d shards (%s … %s)", len(schemas), schemas[0], schemas[len(schemas)-1])
	}
	return strings.Join(schemas, ", ")
}
