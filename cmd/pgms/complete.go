package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
)

// Shell completion of flag values (pgms completion bash|zsh|fish|
// powershell writes the script). Values come from the topology files of
// --config, else $PGMS_CONFIG, else the current directory; files that do
// not load complete nothing rather than print errors into the shell.

// completionTopology loads the topology a command line names, quietly.
func completionTopology(cmd *cobra.Command) *config.Topology {
	path := envOr("PGMS_CONFIG", ".")
	if f := cmd.Flags().Lookup("config"); f != nil && f.Value.String() != "" {
		path = f.Value.String()
	}
	t, _ := config.Load(path, config.AllowUnsetEnv())
	if t == nil || len(t.Nodes) == 0 {
		return nil
	}
	return t
}

// completeNodes offers the node names of the topology files.
func completeNodes(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	t := completionTopology(cmd)
	if t == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range t.Nodes {
		out = append(out, n.Name)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeShards offers the ranges of the shards blocks, each with the
// node it is placed on.
func completeShards(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	t := completionTopology(cmd)
	if t == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, r := range t.Shards {
		label := fmt.Sprint(r.From)
		if r.To != r.From {
			label = fmt.Sprintf("%d-%d", r.From, r.To)
		}
		state := "active"
		if !r.Active {
			state = "inactive"
		}
		out = append(out, fmt.Sprintf("%s\ton %s, %s", label, r.Node, state))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeValues offers fixed values, for flags such as yes/no.
func completeValues(values ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)
}

// registerCompletions attaches the value completions to every command
// that has the flags, so that each flag completes the same way wherever
// it appears.
func registerCompletions(root *cobra.Command) {
	byFlag := map[string]cobra.CompletionFunc{
		"drain":                   completeNodes,
		"shards":                  completeShards,
		"activate":                completeValues("yes", "no"),
		"activate-on-destination": completeValues("yes", "no"),
		"copy":                    completeValues("fast", "native"),
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for name, fn := range byFlag {
			if c.Flags().Lookup(name) != nil {
				c.RegisterFlagCompletionFunc(name, fn) //nolint:errcheck // the flag exists
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
