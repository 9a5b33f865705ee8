package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/textdiff"
	"github.com/pgms-dev/pgms/internal/words"
)

func init() { register(newFmtCommand) }

func newFmtCommand() *cobra.Command {
	var (
		path        string
		check, diff bool
	)
	cmd := &cobra.Command{
		Use:   "fmt",
		Short: "Rewrite the topology files in canonical layout",
		Long: `Fmt rewrites the topology files in canonical layout: HCL's standard
indentation and alignment, and shard ranges written plainly ("0007" becomes
"7", "3 - 5" becomes "3-5"). It prints the name of each file it changes.

--check changes nothing: it lists the files that are not in canonical layout
and exits 1 if there are any. --diff prints the changes as a unified diff
(with --check, without writing them).`,
		Example: `  pgms fmt --config topology/
  pgms fmt --check --diff --config topology/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			files, diags := config.ListFiles(path)
			if diags.HasErrors() {
				printDiagnostics(stderr, nil, diags)
				return errReported
			}
			var (
				unformatted int
				broken      hcl.Diagnostics
				sources     = map[string][]byte{}
			)
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				sources[f] = src
				formatted, diags := config.Format(src, f)
				if diags.HasErrors() {
					broken = append(broken, diags...)
					continue
				}
				if bytes.Equal(src, formatted) {
					continue
				}
				unformatted++
				if diff {
					fmt.Fprint(out, textdiff.Unified(f, f, string(src), string(formatted)))
				} else {
					fmt.Fprintln(out, f)
				}
				if !check {
					if err := replaceFile(f, formatted); err != nil {
						return err
					}
				}
			}
			if len(broken) > 0 {
				if err := printDiagnostics(stderr, sources, broken); err != nil {
					return err
				}
				return fmt.Errorf("cannot format files with syntax errors: %s", errorCount(broken))
			}
			if check && unformatted > 0 {
				return fmt.Errorf("%s not in canonical layout; run pgms fmt", words.Count(unformatted, "file"))
			}
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; list unformatted files and exit 1 if there are any")
	cmd.Flags().BoolVar(&diff, "diff", false, "print the changes as a unified diff")
	return cmd
}
