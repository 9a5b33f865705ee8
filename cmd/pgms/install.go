package main

import (
	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/views"
)

func newInstallCommand() *cobra.Command {
	var (
		nodes          nodeFlags
		configPath     string
		naming         namingFlags
		allowDowngrade bool
		format         formatFlag
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade the microsharding stored-function library on nodes",
		Long:  longHelp("install"),
		Example: `  pgms install --dsn postgres://admin@db1/app --dsn postgres://admin@db2/app
  PGMS_DSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms install
  pgms install --config topology/   # every node of the topology, with its naming`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			opts := sql.Options{Schema: nodes.schema, AllowDowngrade: allowDowngrade}
			if naming.given(cmd) {
				opts.Naming = &naming.Naming
			}
			var dsns []string
			if configPath != "" {
				t, err := loadTopology(cmd.ErrOrStderr(), configPath)
				if err != nil {
					return err
				}
				for _, n := range t.Nodes {
					dsns = append(dsns, n.DSN)
				}
				naming := t.Cluster.Naming()
				opts.Schema, opts.Naming = t.Cluster.LibrarySchema, &naming
			} else {
				if dsns, err = nodes.resolve(); err != nil {
					return err
				}
			}
			report := views.NewInstall(runner.Install(cmd.Context(), dsns, opts))
			if err := r.Render(cmd.OutOrStdout(), report); err != nil {
				return err
			}
			return nodeFailures(cmd, r, report.Failed(), "install failed on %d of %d nodes", len(dsns))
		},
	}
	nodes.add(cmd)
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().StringVar(&configPath, "config", "", "install on every node of these topology files, with their library schema and naming")
	naming.add(cmd, "shard schema name prefix (changing it on a node with active shards is refused)")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "let an older pgms replace a newer library")
	return cmd
}
