package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/views"
)

func newValidateCommand() *cobra.Command {
	var (
		path       string
		allowUnset bool
		format     formatFlag
	)
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the topology files without connecting to any node",
		Long:  longHelp("validate"),
		Example: `  pgms validate --config topology/
  PGMS_CONFIG=topology/ pgms validate --allow-unset-env`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			var opts []config.Option
			if allowUnset {
				opts = append(opts, config.AllowUnsetEnv())
			}
			t, diags := config.Load(path, opts...)
			report := views.NewValidate(t, diags)
			if !views.IsJSON(r) {
				if err := printDiagnostics(cmd.ErrOrStderr(), t.Sources, diags); err != nil {
					return err
				}
			}
			if err := r.Render(cmd.OutOrStdout(), report); err != nil {
				return err
			}
			switch {
			case report.Valid:
				return nil
			case views.IsJSON(r):
				return withCode(exitError, errReported)
			}
			return fmt.Errorf("the configuration is not valid: %s", errorCount(diags))
		},
	}
	configFlag(cmd, &path)
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().BoolVar(&allowUnset, "allow-unset-env", false, "report env() of an unset variable as a warning, not an error")
	return cmd
}
