package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/words"
)

func init() {
	register(newActivateCommand)
	register(newDeactivateCommand)
}

func newActivateCommand() *cobra.Command {
	var (
		nodes  nodeFlags
		shards rangeFlags
	)
	cmd := &cobra.Command{
		Use:   "activate --shards=N-M --dsn=DSN",
		Short: "Activate existing shards on a node",
		Long: `Activate adds shards to the node's active list, so that
microsharding_list_active_shards() reports them; every shard must exist there.
Activating an active shard again changes nothing.

Just before activating, activate reads every node it knows of: the ones
PGMS_DSNS, PGDSNS or DSNS list, and the ones their node registries record
(nodes pgms has managed). It refuses a shard that is active on another node,
that another pgms run is moving or allocating, or when a node cannot be read:
a shard is active on at most one node.`,
		Example: `  PGDSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms activate --shards=5-8 --dsn postgres://admin@db2/app`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := shards.parse()
			if err != nil {
				return err
			}
			target, err := targetNode(nodes.dsns, "activate")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			node, err := pgutil.Connect(ctx, target)
			if err != nil {
				return err
			}
			defer node.Close()
			activated, err := executor.Activate(ctx, node, from, to, executor.ActivateOptions{LibrarySchema: nodes.schema,
				Fleet: fleetFor(ctx, target, nodes.schema), Who: invocation("activate", fmt.Sprintf("--shards=%d-%d", from, to))})
			if err != nil {
				return err
			}
			if len(activated) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s active already\n", node.Name, words.ShardRange(from, to)+" "+words.Plural(to-from+1, "was", "were"))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: activated %s\n", node.Name, schemaList(activated))
			return nil
		},
	}
	nodes.add(cmd)
	shards.add(cmd, "to activate")
	return cmd
}

func newDeactivateCommand() *cobra.Command {
	var (
		nodes  nodeFlags
		shards rangeFlags
	)
	cmd := &cobra.Command{
		Use:   "deactivate --shards=N-M --dsn=DSN",
		Short: "Deactivate shards on a node, keeping their schemas",
		Long: `Deactivate removes shards from the node's active list; their schemas and data
stay. Shards that are inactive or absent are left as they are.`,
		Example: `  pgms deactivate --shard=12 --dsn postgres://admin@db1/app`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := shards.parse()
			if err != nil {
				return err
			}
			target, err := targetNode(nodes.dsns, "deactivate")
			if err != nil {
				return err
			}
			node, err := pgutil.Connect(cmd.Context(), target)
			if err != nil {
				return err
			}
			defer node.Close()
			deactivated, err := executor.Deactivate(cmd.Context(), node, from, to, executor.ActivateOptions{LibrarySchema: nodes.schema})
			if err != nil {
				return err
			}
			if len(deactivated) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s not active\n", node.Name, words.ShardRange(from, to)+" "+words.Plural(to-from+1, "was", "were"))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: deactivated %s\n", node.Name, schemaList(deactivated))
			return nil
		},
	}
	nodes.add(cmd)
	shards.add(cmd, "to deactivate")
	return cmd
}
