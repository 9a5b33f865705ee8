package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/textdiff"
	"github.com/pgms-dev/pgms/internal/words"
)

func newFmtCommand() *cobra.Command {
	var (
		path        string
		check, diff bool
	)
	cmd := &cobra.Command{
		Use:   "fmt",
		Short: "Rewrite the topology files in canonical layout",
		Long:  longHelp("fmt"),
		Example: `  pgms fmt --config topology/
  pgms fmt --check --diff --config topology/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			changed, sources, diags, err := config.FormatFiles(path)
			if err != nil {
				return err
			}
			if sources == nil {
				printDiagnostics(stderr, nil, diags)
				return errReported
			}
			for _, f := range changed {
				if diff {
					fmt.Fprint(out, textdiff.Unified(f.Path, f.Path, string(f.Old), string(f.New)))
				} else {
					fmt.Fprintln(out, f.Path)
				}
				if !check {
					if err := config.WriteFile(f.Path, f.New); err != nil {
						return err
					}
				}
			}
			if diags.HasErrors() {
				if err := printDiagnostics(stderr, sources, diags); err != nil {
					return err
				}
				return fmt.Errorf("cannot format files with syntax errors: %s", errorCount(diags))
			}
			if check && len(changed) > 0 {
				return fmt.Errorf("%s not in canonical layout; run pgms fmt", words.Count(len(changed), "file"))
			}
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; list unformatted files and exit 1 if there are any")
	cmd.Flags().BoolVar(&diff, "diff", false, "print the changes as a unified diff")
	return cmd
}
