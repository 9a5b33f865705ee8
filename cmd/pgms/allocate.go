package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/views"
)

func newAllocateCommand() *cobra.Command {
	var (
		nodes      nodeFlags
		shards     rangeFlags
		migrateCmd string
		activate   string
		format     formatFlag
	)
	cmd := &cobra.Command{
		Use:   "allocate --shards=N-M --dsn=DSN",
		Short: "Create new shards on a node, run the migrations and activate them",
		Long:  longHelp("allocate"),
		Example: `  pgms allocate --shards=5-8 --dsn postgres://admin@db2/app --migrate-cmd 'npm run migrate'
  MIGRATE_CMD=./migrate.sh pgms allocate --shard=9 --activate=no`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			from, to, err := shards.parse()
			if err != nil {
				return err
			}
			doActivate, err := parseYesNo("--activate", activate)
			if err != nil {
				return err
			}
			target, err := dsn.ResolveOne(nodes.dsns, "allocate")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := textOut(cmd, r)
			node, err := pgutil.Connect(ctx, target)
			if err != nil {
				return err
			}
			defer node.Close()
			spec := executor.AllocateSpec{
				From: from, To: to, Activate: doActivate, LibrarySchema: nodes.schema,
				Fleet: fleetFor(ctx, target, nodes.schema), Who: runner.Invocation("allocate", fmt.Sprintf("--shards=%d-%d", from, to)),
				Stdout: log, Stderr: cmd.ErrOrStderr(),
			}
			if migrateCmd != "" {
				spec.MigrateCommand = []string{"/bin/sh", "-c", migrateCmd}
				spec.Before = func(step string) {
					if step == "migrate" {
						fmt.Fprintf(log, "%s: running the migrate command for %s: %s\n", node.Name, words.ShardRange(from, to), dsn.Redact(migrateCmd))
					}
				}
			}
			res, err := executor.Allocate(ctx, node, spec)
			var migrateErr *executor.MigrateError
			if err != nil && !errors.As(err, &migrateErr) {
				return err
			}
			if rerr := r.Render(cmd.OutOrStdout(), views.NewAllocate(node.Name, from, to, doActivate, res, err != nil)); rerr != nil {
				return rerr
			}
			return err
		},
	}
	nodes.add(cmd)
	shards.add(cmd, "to allocate")
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().StringVar(&migrateCmd, "migrate-cmd", envOr("MIGRATE_CMD", ""), "shell command that migrates the new shards, run before activation ($MIGRATE_CMD)")
	cmd.Flags().StringVar(&activate, "activate", "yes", "activate the shards once the migrate command succeeded: yes or no")
	return cmd
}
