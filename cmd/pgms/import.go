package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newImportCommand) }

var nodeNamePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`)

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
	)
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Write topology files that describe the live cluster as it is",
		Long: `Import reads every node and writes a topology file placing each shard where it
lives, with its active flag; contiguous ranges are merged. pgms plan on the
result shows no changes. This is how a cluster managed by pg-microsharding (or
by hand) comes under pgms.

Name nodes with --node NAME=DSN; plain --dsn entries (or $PGMS_DSNS, $PGDSNS,
$DSNS) are named after their host. The file reads each DSN from an
environment variable PGMS_DSN_<NAME> (printed at the end), so no password
lands in it; --literal-dsn writes the DSNs themselves, without passwords
(libpq then finds them in PGPASSWORD or ~/.pgpass).`,
		Example: `  pgms import --node a=postgres://admin@db-a/app --node b=postgres://admin@db-b/app --out topology/`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs, err := importSpecs(nodes, dsns)
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
			if err := replaceFile(target, content); err != nil {
				return err
			}
			shards, active := t.Counts()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Wrote %s: %s, %s (%d active).\n", target, words.Count(len(t.Nodes), "node"), words.Count(shards, "shard"), active)
			if !literalDSN {
				fmt.Fprintln(out, "\nIt reads the DSNs from these variables; set them wherever pgms runs:")
				for _, s := range specs {
					fmt.Fprintf(out, "  export %s='%s'\n", config.DSNVariable(s.Name), dsn.Redact(s.DSN))
				}
			}
			return nil
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
	return cmd
}

// importSpecs names the nodes to import: NAME=DSN entries as given, plain
// DSNs after their host.
func importSpecs(nodes, dsns []string) ([]state.NodeSpec, error) {
	var specs []state.NodeSpec
	seen := map[string]bool{}
	add := func(name, d string) error {
		if !nodeNamePattern.MatchString(name) {
			return fmt.Errorf("node name %q: use letters, digits, _ and -, starting with a letter", name)
		}
		if seen[name] {
			return fmt.Errorf("node name %q given twice; name the nodes with --node NAME=DSN", name)
		}
		seen[name] = true
		specs = append(specs, state.NodeSpec{Name: name, DSN: d})
		return nil
	}
	for _, n := range nodes {
		name, d, ok := strings.Cut(n, "=")
		if !ok {
			return nil, fmt.Errorf("--node %q: write NAME=DSN", dsn.Redact(n))
		}
		if err := add(name, d); err != nil {
			return nil, err
		}
	}
	if len(nodes) == 0 && len(dsns) == 0 {
		dsns, _ = dsn.FromEnv()
	}
	for _, d := range dsns {
		if err := add(hostName(d), d); err != nil {
			return nil, err
		}
	}
	if len(specs) == 0 {
		return nil, errors.New("no nodes given: pass --node NAME=DSN (repeatable) or --dsn DSN")
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}

var notNameChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// hostName derives a node name from a DSN's host and port: db-a.example:5432
// becomes db_a_example_5432.
func hostName(d string) string {
	name := notNameChars.ReplaceAllString(strings.SplitN(dsn.Name(d), "/", 2)[0], "_")
	name = strings.Trim(name, "_")
	if name == "" || !isLetter(name[0]) {
		name = "node_" + name
	}
	return name
}
