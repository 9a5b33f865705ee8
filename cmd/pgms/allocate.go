package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
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
						fmt.Fprintf(out, "%s: running the migrate command for %s: %s\n", node.Name, rangeText(from, to), dsn.Redact(migrateCmd))
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
				fmt.Fprintf(out, "%s: %s already\n", node.Name, rangeVerb(from, to, "exists", "exist"))
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
				fmt.Fprintf(out, "%s: %s active already\n", node.Name, rangeVerb(from, to, "was", "were"))
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

// rangeFlags are --shards=N-M and its single-shard spelling --shard=N.
type rangeFlags struct{ shards, shard string }

func (f *rangeFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.shards, "shards", "", "shards "+what+": N or N-M (inclusive)")
	cmd.Flags().StringVar(&f.shard, "shard", "", "one shard "+what+" (same as --shards=N)")
}

func (f *rangeFlags) parse() (from, to int, err error) {
	label, flag := f.shards, "--shards"
	switch {
	case f.shards != "" && f.shard != "":
		return 0, 0, fmt.Errorf("pass --shards or --shard, not both")
	case f.shards == "" && f.shard == "":
		return 0, 0, fmt.Errorf("pass --shards=N-M (or --shard=N): the shards to act on")
	case f.shard != "":
		label, flag = f.shard, "--shard"
	}
	from, to, err = config.ParseRange(label)
	if err != nil {
		return 0, 0, fmt.Errorf("%s=%s: %v", flag, label, err)
	}
	if flag == "--shard" && from != to {
		return 0, 0, fmt.Errorf("--shard=%s: one shard number expected; use --shards for a range", label)
	}
	return from, to, nil
}

// parseYesNo reads the yes/no values pg-microsharding's flags take.
func parseYesNo(flag, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "y", "true", "1", "on":
		return true, nil
	case "no", "n", "false", "0", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s=%s: use yes or no", flag, v)
}

// targetNode picks the one node an imperative command acts on: the --dsn
// given, else the only node of the DSN list variables, else the libpq
// variables.
func targetNode(flags []string, command string) (string, error) {
	switch len(flags) {
	case 0:
	case 1:
		return flags[0], nil
	default:
		return "", fmt.Errorf("%s acts on one node and --dsn was given %d times", command, len(flags))
	}
	if list, from := dsn.FromEnv(); len(list) > 1 {
		return "", fmt.Errorf("%s acts on one node and %s lists %d; pass --dsn to choose one", command, from, len(list))
	}
	list, err := dsn.Resolve(nil)
	if err != nil {
		return "", err
	}
	return list[0], nil
}

// fleetFor is every node an activation on target is checked against: the
// target, the nodes the DSN list variables name, and the nodes their
// registries know (nodes pgms managed that may hold the shards).
func fleetFor(ctx context.Context, target, librarySchema string) *state.Fleet {
	f := state.Fleet{LibrarySchema: librarySchema}.With(state.NodeSpec{Name: dsn.Name(target), DSN: target})
	list, _ := dsn.FromEnv()
	for _, d := range list {
		f = f.With(state.NodeSpec{Name: dsn.Name(d), DSN: d})
	}
	for _, n := range append([]state.NodeSpec(nil), f.Nodes...) {
		c, err := pgutil.Connect(ctx, n.DSN)
		if err != nil {
			continue // the check itself reports it
		}
		reg, _ := state.ReadRegistry(ctx, c.Conn, librarySchema)
		c.Close()
		for _, r := range reg {
			f = f.With(state.NodeSpec{Name: r.Name, DSN: r.DSN})
		}
	}
	return &f
}

// rangeText says "shard 5" or "shards 5-8".
func rangeText(from, to int) string {
	if from == to {
		return fmt.Sprintf("shard %d", from)
	}
	return fmt.Sprintf("shards %d-%d", from, to)
}

// rangeVerb says "shard 5 is" or "shards 5-8 are", with the verb given.
func rangeVerb(from, to int, one, many string) string {
	if from == to {
		return rangeText(from, to) + " " + one
	}
	return rangeText(from, to) + " " + many
}

// schemaList names a few schemas, or counts many and names the first and
// last.
func schemaList(schemas []string) string {
	if len(schemas) > 4 {
		return fmt.Sprintf("%d shards (%s … %s)", len(schemas), schemas[0], schemas[len(schemas)-1])
	}
	return strings.Join(schemas, ", ")
}
