package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newActivateCommand() *cobra.Command {
	return newActivationCommand(true, &cobra.Command{
		Use:     "activate --shards=N-M --dsn=DSN",
		Short:   "Activate existing shards on a node",
		Long:    longHelp("activate"),
		Example: `  PGDSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms activate --shards=5-8 --dsn postgres://admin@db2/app`,
	})
}

func newDeactivateCommand() *cobra.Command {
	return newActivationCommand(false, &cobra.Command{
		Use:     "deactivate --shards=N-M --dsn=DSN",
		Short:   "Deactivate shards on a node, keeping their schemas",
		Long:    longHelp("deactivate"),
		Example: `  pgms deactivate --shard=12 --dsn postgres://admin@db1/app`,
	})
}

// newActivationCommand completes activate (activate true) or deactivate.
func newActivationCommand(activate bool, cmd *cobra.Command) *cobra.Command {
	var (
		nodes  nodeFlags
		shards rangeFlags
		format formatFlag
	)
	name := cmd.Name()
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		r, err := format.renderer()
		if err != nil {
			return err
		}
		from, to, err := shards.parse()
		if err != nil {
			return err
		}
		target, err := dsn.ResolveOne(nodes.dsns, name)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		node, err := pgutil.Connect(ctx, target)
		if err != nil {
			return err
		}
		defer node.Close()
		opts := executor.ActivateOptions{LibrarySchema: nodes.schema}
		change := executor.Deactivate
		if activate {
			opts.Fleet, opts.Who = fleetFor(ctx, target, nodes.schema), runner.Invocation(name, fmt.Sprintf("--shards=%d-%d", from, to))
			change = executor.Activate
		}
		changed, err := change(ctx, node, from, to, opts)
		if err != nil {
			return err
		}
		return r.Render(cmd.OutOrStdout(), views.NewActivation(activate, node.Name, from, to, changed))
	}
	nodes.add(cmd)
	shards.add(cmd, "to "+name)
	format.add(cmd, views.FormatText, views.FormatJSON)
	return cmd
}

// fleetFor is every node an activation on target is checked against: the
// target, the nodes the DSN list variables name, and those their
// registries know.
func fleetFor(ctx context.Context, target, librarySchema string) *state.Fleet {
	listed, _ := dsn.FromEnv()
	return runner.FleetAround(ctx, target, librarySchema, listed)
}
