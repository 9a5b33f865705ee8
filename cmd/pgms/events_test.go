package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/jsonschema"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// schemas are the JSON schema files of docs/, which the tests hold real
// output to.
func schemas(t *testing.T) *jsonschema.Set {
	t.Helper()
	s, err := jsonschema.Load("../../docs")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkEvents parses an event stream line by line, checks every line
// against docs/events.schema.json, and returns the events.
func checkEvents(t *testing.T, s *jsonschema.Set, stream string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(stream, "\n"), "\n") {
		if err := s.Validate("events.schema.json", []byte(line)); err != nil {
			t.Errorf("line %d: %v\n%s", i+1, err, line)
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		events = append(events, e)
	}
	return events
}

// TestApplyEvents runs apply -json with a move of a shard holding rows
// and checks the stream: one valid object per line, each type there, in
// order, and no password anywhere.
func TestApplyEvents(t *testing.T) {
	dbs := freshCluster(t)
	s := schemas(t)
	dir := t.TempDir()
	migrate := migrateScript(t)
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrate, `shards "0-2" { node = "a" }`+"\n"))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	pgtest.Exec(t, pgtest.Connect(t, dbs[0].DSN), `INSERT INTO sh0002.users (name, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 20000) g`)

	// The plan document as apply -json will carry it.
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrate, `shards "0-1" { node = "a" }
shards "2" { node = "b" }
`))
	plan := pgms(t, "", "plan", "--config", dir, "-json").must(t)
	if err := s.Validate("plan.schema.json", []byte(plan.stdout)); err != nil {
		t.Error(err)
	}

	r := pgms(t, "", "apply", "--config", dir, "--auto-approve", "-json", "--progress", "1ms").must(t)
	events := checkEvents(t, s, r.stdout)
	t.Logf("apply -json:\n%s", r.stdout)
	seen := map[string]int{}
	var order []string
	for _, e := range events {
		typ := e["type"].(string)
		if seen[typ] == 0 {
			order = append(order, typ)
		}
		seen[typ]++
	}
	for _, typ := range []string{"run_start", "plan", "step_start", "phase", "progress", "cutover", "step_end", "run_end"} {
		if seen[typ] == 0 {
			t.Errorf("no %s event in:\n%s", typ, r.stdout)
		}
	}
	if order[0] != "run_start" || order[1] != "plan" || events[len(events)-1]["type"] != "run_end" {
		t.Errorf("events in the order %v", order)
	}
	end := events[len(events)-1]["run_end"].(map[string]any)
	if end["outcome"] != "succeeded" || end["done"] != 1.0 {
		t.Errorf("run_end %v", end)
	}
	for _, e := range events {
		if e["type"] == "cutover" && (e["step"] != 1.0 || e["schema"] != "sh0002") {
			t.Errorf("cutover event %v", e)
		}
	}
	if strings.Contains(r.stdout, "password=") {
		t.Error("a password in the events")
	}
	// The person's view goes to standard error.
	if !strings.Contains(r.stderr, "~ move shard 2 (sh0002) from a to b") {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	// Nothing to do: run_start, plan and run_end.
	r = pgms(t, "", "apply", "--config", dir, "--auto-approve", "-json").must(t)
	events = checkEvents(t, s, r.stdout)
	if len(events) != 3 || events[2]["run_end"].(map[string]any)["outcome"] != "no_changes" {
		t.Errorf("no-op apply:\n%s", r.stdout)
	}
}

// TestMoveEvents runs pgms move -json, back from b to a.
func TestMoveEvents(t *testing.T) {
	dbs := freshCluster(t)
	s := schemas(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrateScript(t), `shards "0-1" { node = "a" }`+"\n"))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	pgtest.Exec(t, pgtest.Connect(t, dbs[0].DSN), `INSERT INTO sh0001.users (name, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 1000) g`)

	r := pgms(t, "", "move", "--shard=1", "--from", dbs[0].DSN, "--to", dbs[1].DSN, "--activate-on-destination=yes", "--json").must(t)
	events := checkEvents(t, s, r.stdout)
	types := map[string]bool{}
	for _, e := range events {
		types[e["type"].(string)] = true
		if step, ok := e["step"]; ok && step != 1.0 {
			t.Errorf("event of step %v: %v", step, e)
		}
	}
	for _, typ := range []string{"run_start", "step_start", "phase", "progress", "cutover", "step_end", "run_end"} {
		if !types[typ] {
			t.Errorf("no %s event in:\n%s", typ, r.stdout)
		}
	}
	end := events[len(events)-1]
	if end["type"] != "run_end" || end["run_end"].(map[string]any)["outcome"] != "moved" {
		t.Errorf("last event %v", end)
	}
}
