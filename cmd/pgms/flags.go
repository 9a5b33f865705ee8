package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

// Each flag that several commands share is defined here, once, with its
// default from the package that owns it.

// configFlag adds --config, the topology directory or file.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "config", envOr("PGMS_CONFIG", "."), "directory of the *.pgms.hcl topology files, or one file ($PGMS_CONFIG)")
}

// formatFlag is --format with the formats a command offers, the first
// being the default. A command offering JSON also takes --json (-json, as
// Terraform spells it): --format events where the command streams events
// (apply, move: one JSON object per line as it goes, as terraform apply
// -json does), else --format json.
type formatFlag struct {
	value   string
	json    bool
	formats []string
}

func (f *formatFlag) add(cmd *cobra.Command, formats ...string) {
	f.formats = formats
	cmd.Flags().StringVar(&f.value, "format", formats[0], "output format: "+strings.Join(formats, ", "))
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp)) //nolint:errcheck // the flag exists
	if slices.Contains(formats, views.FormatJSON) {
		cmd.Flags().BoolVar(&f.json, "json", false, "same as --format "+f.jsonFormat())
	}
}

// jsonFormat is the format --json stands for.
func (f *formatFlag) jsonFormat() string {
	if slices.Contains(f.formats, views.FormatEvents) {
		return views.FormatEvents
	}
	return views.FormatJSON
}

// name is the format asked for: --format, or the one --json stands for.
func (f *formatFlag) name() string {
	if f.json {
		return f.jsonFormat()
	}
	return f.value
}

// renderer is the renderer of the format given.
func (f *formatFlag) renderer() (views.Renderer, error) {
	return views.RendererFor(f.name(), f.formats...)
}

// planRenderer is the plan's renderer of the format asked for; the text
// plan is coloured on a terminal.
func planRenderer(cmd *cobra.Command, f formatFlag) (planner.Renderer, error) {
	r, err := planner.RendererFor(f.name())
	if t, ok := r.(planner.Text); ok {
		t.Color = colorful(cmd.OutOrStdout())
		r = t
	}
	return r, err
}

// textOut is where a command writes what it shows as it goes (a listing
// before a question, progress, a migration's output): standard output,
// except in JSON, whose document or events (r nil) are alone there.
func textOut(cmd *cobra.Command, r views.Renderer) io.Writer {
	if r == nil || views.IsJSON(r) {
		return cmd.ErrOrStderr()
	}
	return cmd.OutOrStdout()
}

// autoApproveFlag adds --auto-approve; alias names another spelling a
// command keeps (pg-microsharding's --yes).
func autoApproveFlag(cmd *cobra.Command, yes *bool, what, alias string) {
	cmd.Flags().BoolVar(yes, "auto-approve", false, what+" without asking (for pipelines)")
	if alias != "" {
		cmd.Flags().BoolVar(yes, alias, false, "same as --auto-approve")
	}
}

// lockTimeoutFlag adds --lock-timeout, the wait for the run lock.
func lockTimeoutFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "lock-timeout", 0, "how long to wait for the run lock when another run holds it (0: fail at once, naming the holder)")
}

// nodeFlags are the flags of commands that act on nodes given directly
// rather than through topology files.
type nodeFlags struct {
	dsns   []string
	schema string
}

func (f *nodeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.dsns, "dsn", nil, "node DSN (repeatable); default: $PGMS_DSNS, $PGDSNS or $DSNS (comma-separated), else the libpq variables (PGHOST, …)")
	libraryFlag(cmd, &f.schema)
}

func (f *nodeFlags) resolve() ([]string, error) { return dsn.Resolve(f.dsns) }

// topologyNodeFlags are nodeFlags with --config: the nodes of the topology
// files, named as the files name them, instead of DSNs named after their
// addresses (list, cleanup).
type topologyNodeFlags struct {
	nodeFlags
	config string
}

func (f *topologyNodeFlags) add(cmd *cobra.Command) {
	f.nodeFlags.add(cmd)
	cmd.Flags().StringVar(&f.config, "config", "", "topology files: their nodes, by their names, and library schema instead of --dsn")
}

// specs are the nodes to visit, and the topology when --config gave one;
// its library schema then replaces --schema unless that was given.
func (f *topologyNodeFlags) specs(cmd *cobra.Command) ([]state.NodeSpec, *config.Topology, error) {
	if f.config == "" {
		dsns, err := f.resolve()
		return specsOf(dsns), nil, err
	}
	if len(f.dsns) > 0 {
		return nil, nil, fmt.Errorf("pass --config or --dsn, not both")
	}
	t, err := loadTopology(cmd.ErrOrStderr(), f.config)
	if err != nil {
		return nil, nil, err
	}
	specs := make([]state.NodeSpec, len(t.Nodes))
	for i, n := range t.Nodes {
		specs[i] = state.NodeSpec{Name: n.Name, DSN: n.DSN}
	}
	if !cmd.Flags().Changed("schema") {
		f.schema = t.Cluster.LibrarySchema
	}
	return specs, t, nil
}

// libraryFlag adds --schema, the library's schema.
func libraryFlag(cmd *cobra.Command, schema *string) {
	cmd.Flags().StringVar(schema, "schema", envOr("PGMS_SCHEMA", sql.DefaultSchema), "schema of the microsharding library ($PGMS_SCHEMA)")
}

// namingFlags are --schema-prefix and --schema-digits.
type namingFlags struct{ sql.Naming }

func (f *namingFlags) add(cmd *cobra.Command, prefixHelp string) {
	cmd.Flags().StringVar(&f.Prefix, "schema-prefix", sql.DefaultNaming.Prefix, prefixHelp)
	cmd.Flags().IntVar(&f.Digits, "schema-digits", sql.DefaultNaming.Digits, "digits of the zero-padded shard number")
}

// given reports whether the command line set the naming.
func (f *namingFlags) given(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("schema-prefix") || cmd.Flags().Changed("schema-digits")
}

// stateFlags choose the state node: the topology's (--config) or a DSN.
type stateFlags struct {
	nodeFlags
	config string
}

func (f *stateFlags) add(cmd *cobra.Command) {
	f.nodeFlags.add(cmd)
	cmd.Flags().StringVar(&f.config, "config", "", "topology files: use their state node and library schema instead of --dsn")
}

// rangeFlags are --shards=N-M and its single-shard spelling --shard=N.
type rangeFlags struct{ shards, shard string }

func (f *rangeFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.shards, "shards", "", "shards "+what+": N or N-M (inclusive)")
	cmd.Flags().StringVar(&f.shard, "shard", "", "one shard "+what+" (same as --shards=N)")
}

func (f *rangeFlags) parse() (from, to int, err error) {
	label, flag := f.shards, "--shards"
	switch {
	case f.shards != "" && f.shard != "":
		return 0, 0, fmt.Errorf("pass --shards or --shard, not both")
	case f.shards == "" && f.shard == "":
		return 0, 0, fmt.Errorf("pass --shards=N-M (or --shard=N): the shards to act on")
	case f.shard != "":
		label, flag = f.shard, "--shard"
	}
	from, to, err = config.ParseRange(label)
	if err != nil {
		return 0, 0, fmt.Errorf("%s=%s: %v", flag, label, err)
	}
	if flag == "--shard" && from != to {
		return 0, 0, fmt.Errorf("--shard=%s: one shard number expected; use --shards for a range", label)
	}
	return from, to, nil
}

// parseYesNo reads the yes/no values pg-microsharding's flags take.
func parseYesNo(flag, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "y", "true", "1", "on":
		return true, nil
	case "no", "n", "false", "0", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s=%s: use yes or no", flag, v)
}

// parseSize reads a size flag such as --max-lag=1MB.
func parseSize(flag, v string) (int64, error) {
	n, err := units.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", flag, v, err)
	}
	return n, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
