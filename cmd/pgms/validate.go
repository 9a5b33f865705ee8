package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
)

func init() { register(newValidateCommand) }

// configFlag adds --config, the topology directory or file.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "config", envOr("PGMS_CONFIG", "."), "directory of the *.pgms.hcl topology files, or one file ($PGMS_CONFIG)")
}

func newValidateCommand() *cobra.Command {
	var (
		path       string
		allowUnset bool
	)
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the topology files without connecting to any node",
		Long: `Validate reads the topology files and reports every problem it finds, each
with its file:line:col and the source line: syntax, unknown settings, bad shard
ranges, shards on two nodes, unknown nodes, missing DSNs and more. It never
connects to a node.

env() of an unset variable is an error, since the commands that connect would
fail; --allow-unset-env makes it a warning, for checks that run where the
secrets are not available (a pull-request build, for instance).`,
		Example: `  pgms validate --config topology/
  PGMS_CONFIG=topology/ pgms validate --allow-unset-env`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts []config.Option
			if allowUnset {
				opts = append(opts, config.AllowUnsetEnv())
			}
			t, diags := config.Load(path, opts...)
			if err := printDiagnostics(cmd.ErrOrStderr(), t.Sources, diags); err != nil {
				return err
			}
			if diags.HasErrors() {
				return fmt.Errorf("the configuration is not valid: %s", count(errorCount(diags), "error"))
			}
			shards, active := t.Counts()
			fmt.Fprintf(cmd.OutOrStdout(), "The configuration is valid: %s, %s (%d active).\n",
				count(len(t.Nodes), "node"), count(shards, "shard"), active)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&allowUnset, "allow-unset-env", false, "report env() of an unset variable as a warning, not an error")
	return cmd
}

// printDiagnostics writes diagnostics for a person, in color on a terminal.
func printDiagnostics(w io.Writer, sources map[string][]byte, diags hcl.Diagnostics) error {
	if len(diags) == 0 {
		return nil
	}
	return config.WriteDiagnostics(w, sources, diags, colorful(w))
}

// colorful reports whether w is a terminal that wants color.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func errorCount(diags hcl.Diagnostics) int {
	n := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			n++
		}
	}
	return n
}

// count writes "1 node", "3 nodes".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
