package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/buildinfo"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/views"
)

func newVersionCommand() *cobra.Command {
	var format formatFlag
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the pgms version, its commit, Go version and library version",
		Long:  longHelp("version"),
		Example: `  pgms version
  pgms version -json | jq -r .version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			return r.Render(cmd.OutOrStdout(), views.NewVersion(buildinfo.Read(), sql.Version))
		},
	}
	format.add(cmd, views.FormatText, views.FormatJSON)
	return cmd
}

// versionText is what pgms --version prints: the same as pgms version.
func versionText() string {
	var b strings.Builder
	views.Text{}.Render(&b, views.NewVersion(buildinfo.Read(), sql.Version)) //nolint:errcheck // a strings.Builder does not fail
	return b.String()
}
