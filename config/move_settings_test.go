package config

import (
	"testing"
	"time"
)

// TestMoveSettings reads the cluster's verify, keep_copy and
// rollback_window, and writes
// them back.
func TestMoveSettings(t *testing.T) {
	for _, tc := range []struct {
		body     string
		verify   string
		level    string
		keepCopy int64
		window   time.Duration
	}{
		{body: ``, level: DefaultVerify},
		{body: `verify = "count"`, verify: "count", level: "count"},
		{body: `keep_copy = "1GB"`, level: DefaultVerify, keepCopy: 1 << 30},
		{body: `keep_copy = "0"`, level: DefaultVerify, keepCopy: -1},
		{body: `rollback_window = "1h30m"`, level: DefaultVerify, window: 90 * time.Minute},
	} {
		src := "cluster {\n" + tc.body + "\n}\n"
		topo, diags := LoadSources(map[string][]byte{"t.pgms.hcl": []byte(src)})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", tc.body, diags)
		}
		if topo.Cluster.Verify != tc.verify || topo.VerifyLevel() != tc.level || topo.Cluster.KeepCopy != tc.keepCopy || topo.Cluster.RollbackWindow != tc.window {
			t.Errorf("%s: verify %q (level %q), keep_copy %d", tc.body, topo.Cluster.Verify, topo.VerifyLevel(), topo.Cluster.KeepCopy)
		}
		again, diags := LoadSources(map[string][]byte{"t.pgms.hcl": Generate(topo)})
		if diags.HasErrors() || again.Cluster.Verify != topo.Cluster.Verify || again.Cluster.KeepCopy != topo.Cluster.KeepCopy || again.Cluster.RollbackWindow != tc.window {
			t.Errorf("%s: written back as %s", tc.body, Generate(topo))
		}
	}
}
