package views

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/buildinfo"
	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// checkJSON renders r as JSON into testdata/name.json and checks that the
// document opens with format_version and uses snake_case keys only.
func checkJSON(t *testing.T, name string, r Report) {
	t.Helper()
	var b strings.Builder
	if err := (JSON{}).Render(&b, r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", name+".json"), b.String())
	if !strings.HasPrefix(b.String(), "{\n  \"format_version\": 1,") {
		t.Errorf("%s: the document does not open with format_version", name)
	}
	var doc any
	if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, name, doc)
}

func checkKeys(t *testing.T, name string, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k != strings.ToLower(k) || strings.ContainsAny(k, " -") {
				t.Errorf("%s: key %q is not snake_case", name, k)
			}
			checkKeys(t, name, e)
		}
	case []any:
		for _, e := range v {
			checkKeys(t, name, e)
		}
	}
}

// checkText renders r as text into testdata/name.golden.
func checkText(t *testing.T, name string, r Report) {
	t.Helper()
	var b strings.Builder
	if err := (Text{}).Render(&b, r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", name+".golden"), b.String())
}

func TestRendererFor(t *testing.T) {
	tests := []struct {
		format  string
		allowed []string
		want    Renderer
		err     string
	}{
		{"text", []string{"text", "json"}, Text{}, ""},
		{"json", []string{"text", "json"}, JSON{}, ""},
		{"md", []string{"text", "markdown", "json"}, Markdown{}, ""},
		{"markdown", []string{"text", "json"}, nil, `unknown format "markdown": use text or json`},
		{"yaml", []string{"text", "markdown", "json"}, nil, `unknown format "yaml": use text, markdown or json`},
	}
	for _, tt := range tests {
		r, err := RendererFor(tt.format, tt.allowed...)
		if r != tt.want || (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("RendererFor(%q, %v) = %v, %v", tt.format, tt.allowed, r, err)
		}
	}
}

func TestMoveReport(t *testing.T) {
	tests := []struct {
		name string
		r    executor.MoveResult
	}{
		{"move_moved", executor.MoveResult{Schema: "sh0003", OldSchema: "sh0003old20261125120000", Total: 41 * time.Second,
			Backfill: 30 * time.Second, Tables: 3, Bytes: 300 << 20, Rows: 2000000,
			Pause: 4200 * time.Microsecond, Core: 1900 * time.Microsecond, Blocked: 52300 * time.Microsecond, Retries: 2}},
		{"move_copied", executor.MoveResult{Schema: "sh0003", NewSchema: "sh0003new", Total: 12 * time.Second,
			Backfill: 10 * time.Second, Tables: 1, Bytes: 10 << 20, Rows: 1000}},
		{"move_already_done", executor.MoveResult{Schema: "sh0003", AlreadyDone: true}},
		{"move_windowed", executor.MoveResult{Schema: "sh0003", OldSchema: "sh0003", Total: 9 * time.Second,
			Backfill: 6 * time.Second, Tables: 3, Bytes: 200 << 20, Rows: 1800000,
			Pause: 9800 * time.Microsecond, Core: 4100 * time.Microsecond, Blocked: 13 * time.Millisecond}},
	}
	for _, tt := range tests {
		m := NewMove("db1:5432/app", "db2:5432/app", tt.r)
		checkText(t, tt.name, m)
		checkJSON(t, tt.name, m)
	}
}

func TestRollbackReport(t *testing.T) {
	tests := []struct {
		name string
		r    Report
	}{
		{"rollback_rolled_back", NewRollback(3, "sh0003", "b", "a", executor.MoveResult{Schema: "sh0003", OldSchema: "sh0003old20261125130000",
			Resumed: true, Total: 6200 * time.Millisecond, Pause: 8800 * time.Microsecond, Core: 3100 * time.Microsecond, Blocked: 23400 * time.Microsecond, Retries: 0})},
		{"rollback_already_done", NewRollback(3, "sh0003", "b", "a", executor.MoveResult{Schema: "sh0003", AlreadyDone: true})},
		{"rollback_closed", NewWindowClosed(3, "sh0003", "b", "a", "sh0003old20261125130000")},
	}
	for _, tt := range tests {
		checkText(t, tt.name, tt.r)
		checkJSON(t, tt.name, tt.r)
	}
}

func TestApplyReport(t *testing.T) {
	shard := func(n int) *planner.Range { return &planner.Range{From: n, To: n} }
	p := &planner.Plan{FormatVersion: planner.FormatVersion, Steps: []planner.Step{
		{Kind: planner.StepMove, From: "a", To: "b", Shards: shard(3), Schemas: []string{"sh0003"}, Activate: true, Bytes: 300 << 20, Reason: "placed on b"},
		{Kind: planner.StepMove, From: "a", To: "c", Shards: shard(4), Schemas: []string{"sh0004"}, Activate: true, Bytes: 200 << 20, Reason: "placed on c"},
		{Kind: planner.StepCleanup, Node: "a", Object: "pgms_move_sh0009", ObjectKind: "slot", Reason: "orphaned", Code: planner.CodeDropSlot},
	}}
	res := executor.ApplyResult{Steps: []executor.StepResult{
		{Step: p.Steps[0], Ran: true, Took: 41 * time.Second, Move: &executor.MoveResult{Schema: "sh0003", OldSchema: "sh0003old20261125120000",
			Total: 41 * time.Second, Pause: 4200 * time.Microsecond, Core: 1900 * time.Microsecond, Blocked: 6100 * time.Microsecond}},
		{Step: p.Steps[1], Ran: true, Took: 2 * time.Second, Err: errors.New("move shard 4 (sh0004) from a to c: node c: cannot connect")},
		{Step: p.Steps[2]},
	}}
	a := NewApply(runner.ApplyOutcome{StateNode: "a", Plan: p, Ran: true, Result: res, Took: 43 * time.Second}, errors.New("move shard 4 (sh0004) from a to c: node c: cannot connect"), false)
	checkText(t, "apply_failed", a)
	checkJSON(t, "apply_failed", a)
	checkText(t, "apply_declined", NewApply(runner.ApplyOutcome{StateNode: "a", Plan: p}, runner.ErrDeclined, false))
}

func TestValidateReport(t *testing.T) {
	top, diags := config.LoadSources(map[string][]byte{"t.pgms.hcl": []byte(`node "a" { dsn = "postgres://app:s3cret@db-a/app" }
shards "0-9" { node = "a" }
shards "5" { node = "b" }
`)})
	v := NewValidate(top, diags)
	if v.Valid || v.Errors == 0 {
		t.Fatalf("valid %v with %d errors", v.Valid, v.Errors)
	}
	checkText(t, "validate_errors", v)
	checkJSON(t, "validate_errors", v)
	if strings.Contains(v.Diagnostics[0].Detail+v.Diagnostics[0].Summary, "s3cret") {
		t.Error("a password is in the report")
	}
	top, _ = config.LoadSources(map[string][]byte{"t.pgms.hcl": []byte("node \"a\" { dsn = \"host=a\" }\nshards \"0-9\" { node = \"a\" }\n")})
	ok := NewValidate(top, hcl.Diagnostics{})
	checkText(t, "validate_valid", ok)
	checkJSON(t, "validate_valid", ok)
}

func TestCleanupOutcomes(t *testing.T) {
	live := &state.Cluster{Nodes: []*state.NodeState{
		{Name: "db1:5432/app", Leftovers: []state.Leftover{
			{Kind: state.LeftoverOldSchema, Name: "sh0001old20261101000000", Schema: "sh0001", Shard: 1, Bytes: 3 << 30},
			{Kind: state.LeftoverSlot, Name: "pgms_move_sh0003", Schema: "sh0003", Shard: 3, RetainedBytes: 41 << 30},
		}},
		{Name: "db2:5432/app", Err: errors.New("node db2:5432/app: cannot connect: connection refused")},
	}}
	verdicts := []state.Verdict{
		{Node: "db1:5432/app", Leftover: live.Nodes[0].Leftovers[1], Drop: true, Reason: "orphaned: no subscription uses it"},
		{Node: "db1:5432/app", Leftover: live.Nodes[0].Leftovers[0], Drop: true, Reason: "renamed source of a move"},
	}
	c := NewCleanup(live, verdicts, 168*time.Hour)
	c.Record(executor.Outcome{Node: "db1:5432/app", Leftover: verdicts[0].Leftover, Dropped: true, RetainedBytes: 41 << 30, Took: 30 * time.Millisecond})
	c.Record(executor.Outcome{Node: "db1:5432/app", Leftover: verdicts[1].Leftover, Err: errors.New("lock timeout"), Took: 10 * time.Second})
	checkText(t, "cleanup_dropped", c)
	checkJSON(t, "cleanup_dropped", c)
}

func TestCommandReports(t *testing.T) {
	top, diags := config.LoadSources(map[string][]byte{"t.pgms.hcl": []byte("node \"a\" { dsn = \"host=a\" }\nnode \"b\" { dsn = \"host=b\" }\nshards \"0-9\" { node = \"a\" }\nshards \"10\" {\n  node   = \"b\"\n  active = false\n}\n")})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name string
		r    Report
	}{
		{"install", NewInstall([]runner.InstallResult{
			{Node: "db1:5432/app", Result: sql.Result{Schema: "microsharding", Fresh: true, ToVersion: 3}},
			{Node: "db2:5432/app", Result: sql.Result{Schema: "microsharding", FromVersion: 0, ToVersion: 3}},
			{Node: "db3:5432/app", Result: sql.Result{Schema: "microsharding", FromVersion: 3, ToVersion: 3}},
			{Node: "db4:5432/app", Err: errors.New("node db4:5432/app: cannot connect: connection refused")},
		})},
		{"allocate", NewAllocate("db1:5432/app", 5, 12, true, executor.AllocateResult{
			Created: []string{"sh0005", "sh0006", "sh0007", "sh0008", "sh0009", "sh0010", "sh0011", "sh0012"}, Migrated: true, MigrateIn: 2300 * time.Millisecond,
			Activated: []string{"sh0005", "sh0006", "sh0007", "sh0008", "sh0009", "sh0010", "sh0011", "sh0012"}}, false)},
		{"allocate_migrate_failed", NewAllocate("db1:5432/app", 5, 5, true, executor.AllocateResult{Created: []string{"sh0005"}}, true)},
		{"activate_already", NewActivation(true, "db1:5432/app", 5, 8, nil)},
		{"deactivate", NewActivation(false, "db1:5432/app", 5, 5, []string{"sh0005"})},
		{"import", NewImport("topology/topology.pgms.hcl", top, []state.NodeSpec{
			{Name: "a", DSN: "postgres://app:s3cret@db-a/app"}, {Name: "b", DSN: "postgres://app@db-b/app"}}, false)},
	}
	for _, tt := range tests {
		checkText(t, tt.name, tt.r)
		checkJSON(t, tt.name, tt.r)
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name string
		info buildinfo.Info
	}{
		{"version_release", buildinfo.Info{Version: "v1.4.0", GoVersion: "go1.26.8", Platform: "linux/amd64"}},
		{"version_checkout", buildinfo.Info{Version: "(devel)", Commit: "4060f48c1a2b3c4d5e6f708192a3b4c5d6e7f809", CommitTime: "2026-11-29T18:12:31Z",
			Modified: true, GoVersion: "go1.26.8", Platform: "linux/arm64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewVersion(tc.info, 3)
			checkText(t, tc.name, r)
			checkJSON(t, tc.name, r)
		})
	}
}
