package main

import (
	"strings"
	"testing"
)

// TestCompletion asks for completions the way the shell scripts of pgms
// completion do (the hidden __complete command) and checks the values
// offered: formats, node names and shard ranges from the topology files,
// yes and no.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	writeTopology(t, dir, "t.pgms.hcl", `node "db1" { dsn = env("PGMS_TEST_UNSET_DSN") }
node "db2" { dsn = "host=db2" }
shards "0" { node = "db1" }
shards "1-40" { node = "db2" }
shards "41-50" {
  node   = "db2"
  active = false
}
`)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"plan", "--format", ""}, []string{"text", "markdown", "json"}},
		{[]string{"apply", "--format", ""}, []string{"text", "json", "events"}},
		{[]string{"rebalance", "--config", dir, "--drain", ""}, []string{"db1", "db2"}},
		{[]string{"activate", "--shards", ""}, []string{"0\ton db1, active", "1-40\ton db2, active", "41-50\ton db2, inactive"}},
		{[]string{"move", "--activate-on-destination", ""}, []string{"yes", "no"}},
		{[]string{"apply", "--copy", ""}, []string{"fast", "native"}},
	}
	t.Setenv("PGMS_CONFIG", dir)
	for _, tc := range tests {
		r := pgms(t, "", append([]string{"__complete"}, tc.args...)...).must(t)
		got := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], ":") {
			t.Errorf("%v: %q", tc.args, r.stdout)
			continue
		}
		if strings.Join(got[:len(got)-1], "|") != strings.Join(tc.want, "|") {
			t.Errorf("%v: %q, want %q", tc.args, got[:len(got)-1], tc.want)
		}
	}
}
