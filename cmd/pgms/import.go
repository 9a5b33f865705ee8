package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/views"
)

func newImportCommand() *cobra.Command {
	var (
		nodes      []string
		dsns       []string
		outDir     string
		fileName   string
		force      bool
		literalDSN bool
		schema     string
		naming     namingFlags
		format     formatFlag
	)
	cmd := &cobra.Command{
		Use:     "import",
		Short:   "Write topology files that describe the live cluster as it is",
		Long:    longHelp("import"),
		Example: `  pgms import --node a=postgres://admin@db-a/app --node b=postgres://admin@db-b/app --out topology/`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			specs, err := runner.ImportNodes(nodes, dsns)
			if err != nil {
				return err
			}
			target := filepath.Join(outDir, fileName)
			if _, err := os.Stat(target); err == nil && !force {
				return fmt.Errorf("%s exists; pass --force to overwrite it, or --out another directory", target)
			}
			t, content, err := runner.Import(cmd.Context(), runner.ImportRequest{Nodes: specs, Naming: naming.Naming, LibrarySchema: schema, LiteralDSN: literalDSN})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}
			if err := config.WriteFile(target, content); err != nil {
				return err
			}
			return r.Render(cmd.OutOrStdout(), views.NewImport(target, t, specs, literalDSN))
		},
	}
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "node as NAME=DSN (repeatable)")
	cmd.Flags().StringArrayVar(&dsns, "dsn", nil, "node DSN, named after its host (repeatable); default $PGMS_DSNS, $PGDSNS or $DSNS")
	cmd.Flags().StringVar(&outDir, "out", ".", "directory to write the topology file to")
	cmd.Flags().StringVar(&fileName, "file", "topology.pgms.hcl", "name of the file to write")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	cmd.Flags().BoolVar(&literalDSN, "literal-dsn", false, "write the DSNs (without passwords) instead of env() references")
	libraryFlag(cmd, &schema)
	naming.add(cmd, "shard schema name prefix")
	format.add(cmd, views.FormatText, views.FormatJSON)
	return cmd
}
