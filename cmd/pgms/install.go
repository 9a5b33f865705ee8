package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
)

func init() { register(newInstallCommand) }

func newInstallCommand() *cobra.Command {
	var (
		nodes          nodeFlags
		configPath     string
		naming         namingFlags
		allowDowngrade bool
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade the microsharding stored-function library on nodes",
		Long: `Install creates the microsharding library (microsharding_list_active_shards()
and the other functions of the pg-microsharding API) in its schema on every
node, or upgrades it in place. It is idempotent: re-running it, or running a
newer pgms over an older library (pg-microsharding's included), keeps the list
of active shards.`,
		Example: `  pgms install --dsn postgres://admin@db1/app --dsn postgres://admin@db2/app
  PGMS_DSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms install
  pgms install --config topology/   # every node of the topology, with its naming`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
				var err error
				if dsns, err = nodes.resolve(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			conns, errs := connectAll(ctx, dsns)
			defer closeAll(conns)
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			failed := 0
			for i, n := range conns {
				if errs[i] != nil {
					fmt.Fprintf(stderr, "pgms: %v\n", errs[i])
					failed++
					continue
				}
				res, err := sql.Install(ctx, n.Conn, opts)
				if err != nil {
					fmt.Fprintf(stderr, "pgms: node %s: install: %v\n", n.Name, pgutil.Describe(err))
					failed++
					continue
				}
				switch {
				case res.Fresh:
					fmt.Fprintf(out, "%s: installed library version %d in schema %s\n", n.Name, res.ToVersion, res.Schema)
				case res.FromVersion == 0:
					fmt.Fprintf(out, "%s: upgraded pg-microsharding's library in schema %s to version %d (active shards kept)\n", n.Name, res.Schema, res.ToVersion)
				case res.FromVersion != res.ToVersion:
					fmt.Fprintf(out, "%s: upgraded library in schema %s from version %d to %d (active shards kept)\n", n.Name, res.Schema, res.FromVersion, res.ToVersion)
				default:
					fmt.Fprintf(out, "%s: library version %d in schema %s is up to date\n", n.Name, res.ToVersion, res.Schema)
				}
			}
			if failed > 0 {
				return fmt.Errorf("install failed on %d of %d nodes", failed, len(dsns))
			}
			return nil
		},
	}
	nodes.add(cmd)
	cmd.Flags().StringVar(&configPath, "config", "", "install on every node of these topology files, with their library schema and naming")
	naming.add(cmd, "shard schema name prefix (changing it on a node with active shards is refused)")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "let an older pgms replace a newer library")
	return cmd
}
