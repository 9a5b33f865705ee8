package views

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/state"
)

func TestStatusRender(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ptr := func(f float64) *float64 { return &f }
	tp := func(tm time.Time) *time.Time { return &tm }
	shard := 3
	lag := int64(734003)
	now := at("2026-11-25T12:10:00Z")
	runs := []state.Run{
		{
			ID: 12, Command: "move", Args: "--shard=3 --from=postgres://admin@db1/app --to=postgres://admin@db2/app --activate-on-destination=yes",
			Host: "deploy-1", PID: 4242, User: "ci", Started: at("2026-11-25T12:00:00Z"), Outcome: state.OutcomeRunning,
			Steps: []state.StepRow{{
				ID: 20, Kind: "move", Shard: &shard, Schema: "sh0003", Source: "db1:5432/app", Destination: "db2:5432/app",
				Strategy: "native", Phase: "backfill", Outcome: state.OutcomeRunning,
				Started: at("2026-11-25T12:00:01Z"), Updated: at("2026-11-25T12:09:58Z"),
				Bytes: 700 << 20, TotalBytes: 1200 << 20, Rows: 5400000, LagBytes: &lag,
				Tables: []state.TableProgress{
					{Name: "orders", State: "ready", Bytes: 500 << 20, Rows: 4000000, TotalBytes: 500 << 20},
					{Name: "order items", State: "copying", Bytes: 200 << 20, Rows: 1400000, TotalBytes: 650 << 20},
					{Name: "Users", State: "waiting", TotalBytes: 50 << 20},
				},
			}},
		},
		{
			ID: 11, Command: "move", Args: "--shard=2 --from=postgres://admin@db1/app --to=postgres://admin@db2/app --activate-on-destination=yes",
			Host: "deploy-1", PID: 4100, User: "ci", Started: at("2026-11-25T11:00:00Z"), Finished: tp(at("2026-11-25T11:00:42.5Z")),
			Outcome: state.OutcomeSucceeded,
			Steps: []state.StepRow{{
				ID: 19, Kind: "move", Schema: "sh0002", Source: "db1:5432/app", Destination: "db2:5432/app", Strategy: "native",
				Phase: "done", Outcome: state.OutcomeSucceeded, Started: at("2026-11-25T11:00:01Z"), Updated: at("2026-11-25T11:00:42Z"),
				Finished: tp(at("2026-11-25T11:00:42Z")), Bytes: 300 << 20, TotalBytes: 300 << 20, Rows: 2000000, Retries: 2,
				BackfillMS: ptr(30000), PauseMS: ptr(4.2), CoreMS: ptr(1.9), TotalMS: ptr(41000),
				Tables: []state.TableProgress{{Name: "orders", State: "ready", Bytes: 300 << 20, Rows: 2000000, TotalBytes: 300 << 20}},
			}},
		},
		{
			ID: 10, Command: "move", Args: "--shard=1 --from=postgres://admin@db1/app --to=postgres://admin@db3/app --activate-on-destination=yes",
			Host: "laptop", PID: 999, User: "alice", Started: at("2026-11-24T09:00:00Z"), Finished: tp(at("2026-11-24T09:00:03Z")),
			Outcome: state.OutcomeFailed, Error: `move shard 1 (sh0001) from db1:5432/app to db3:5432/app: tables without a primary key or replica identity in sh0001 on db1:5432/app: "sh0001"."log"`,
			Steps: []state.StepRow{{
				ID: 18, Kind: "move", Schema: "sh0001", Source: "db1:5432/app", Destination: "db3:5432/app", Strategy: "native",
				Phase: "preflight", Outcome: state.OutcomeFailed, Started: at("2026-11-24T09:00:01Z"), Updated: at("2026-11-24T09:00:03Z"),
				Finished: tp(at("2026-11-24T09:00:03Z")), TotalMS: ptr(2100),
				Error: `move shard 1 (sh0001) from db1:5432/app to db3:5432/app: tables without a primary key or replica identity in sh0001 on db1:5432/app: "sh0001"."log"`,
			}},
		},
	}
	for _, tc := range []struct {
		name string
		lock state.LockStatus
		runs []state.Run
	}{
		{"status_running.golden", state.LockStatus{Held: true, HolderPID: 31337, Holder: &state.Holder{
			BackendPID: 31337, Host: "deploy-1", PID: 4242, User: "ci", Command: "move --shard=3", RunID: 12, Since: at("2026-11-25T12:00:00Z")}}, runs},
		{"status_stale.golden", state.LockStatus{Holder: &state.Holder{
			BackendPID: 31337, Host: "deploy-1", PID: 4242, User: "ci", Command: "move --shard=3", Since: at("2026-11-25T12:00:00Z")}}, runs[1:2]},
		{"status_empty.golden", state.LockStatus{}, nil},
	} {
		var b bytes.Buffer
		if err := (Text{}).Render(&b, NewStatus("db1:5432/app", tc.lock, tc.runs, now)); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, filepath.Join("testdata", tc.name), b.String())
		checkJSON(t, strings.TrimSuffix(tc.name, ".golden"), NewStatus("db1:5432/app", tc.lock, tc.runs, now))
	}
}

// TestStatusWindows renders the rollback windows status reads from the
// topology's nodes.
func TestStatusWindows(t *testing.T) {
	since := time.Date(2026, 11, 25, 11, 30, 0, 0, time.UTC)
	s := NewStatus("db1:5432/app", state.LockStatus{}, nil, since.Add(10*time.Minute))
	s.Windows = []planner.Window{
		{Shard: 7, Schema: "sh0007", Node: "a", To: "c", Since: since, Until: since.Add(time.Hour), RetainedBytes: 3 << 20},
		{Shard: 9, Schema: "sh0009", Node: "b", To: "c", Since: since.Add(-2 * time.Hour), Until: since.Add(-time.Hour), RetainedBytes: 12 << 20, Expired: true},
	}
	checkText(t, "status_windows", s)
	checkJSON(t, "status_windows", s)
}
