package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/views"
)

// rebalanceRows is the number of rows of table t in each shard: node a
// holds shards 0-6 (0, the global shard, empty), b holds 7-8, c nothing.
var rebalanceRows = map[int]int{0: 0, 1: 12000, 2: 10000, 3: 8000, 4: 6000, 5: 4000, 6: 2000, 7: 300, 8: 100}

// unevenCluster sets up the three nodes with the shards of rebalanceRows,
// each with a table t of about 240 bytes a row, and points PGMS_DSN_A..C
// at them. Autovacuum stays off so that sizes do not depend on timing.
func unevenCluster(t *testing.T) []pgtest.DB {
	t.Helper()
	dbs := pgtest.Databases(t, 3)
	for i, name := range []string{"a", "b", "c"} {
		t.Setenv(config.DSNVariable(name), dbs[i].DSN)
		pgms(t, "", "install", "--dsn", dbs[i].DSN).must(t)
	}
	fill := func(db pgtest.DB, from, to int) {
		var b strings.Builder
		fmt.Fprintf(&b, "SELECT microsharding.microsharding_ensure_exist(%d, %d); SELECT microsharding.microsharding_ensure_active(%d, %d);", from, to, from, to)
		for n := from; n <= to; n++ {
			fmt.Fprintf(&b, `CREATE TABLE sh%04d.t (id int PRIMARY KEY, pad text NOT NULL) WITH (autovacuum_enabled = false);
				INSERT INTO sh%04d.t SELECT i, repeat('x', 200) FROM generate_series(1, %d) i;`, n, n, rebalanceRows[n])
		}
		pgtest.Exec(t, pgtest.Connect(t, db.DSN), b.String())
	}
	fill(dbs[0], 0, 6)
	fill(dbs[1], 7, 8)
	return dbs
}

const unevenNodes = `# The nodes of the rebalance tests.
node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "c" { dsn = env("PGMS_DSN_C") }
`

const unevenShards = `
shards "0" { node = "a" } # global

# The first shards.
shards "1-6" { node = "a" }
shards "7-8" { node = "b" }
`

var sizePattern = regexp.MustCompile(`\d+(\.\d+)? (B|kB|MB|GB)\b`)

// section returns the lines of out from the first that starts with from up
// to the first after it that starts with to (excluded), or to the end.
func section(out, from, to string) string {
	lines := strings.SplitAfter(out, "\n")
	start := -1
	for i, l := range lines {
		if start < 0 && strings.HasPrefix(l, from) {
			start = i
			continue
		}
		if start >= 0 && to != "" && strings.HasPrefix(l, to) {
			return strings.Join(lines[start:i], "")
		}
	}
	if start < 0 {
		return ""
	}
	return strings.Join(lines[start:], "")
}

// printedMoves reads the "x → y: …: 1, 2, 4-6" lines of rebalance's
// output into shard → "x>y".
func printedMoves(t *testing.T, out string) map[int]string {
	t.Helper()
	moves := map[int]string{}
	re := regexp.MustCompile(`(?m)^  (\S+) → (\S+): .*?([0-9, -]+)$`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		for _, item := range strings.Split(m[3], ", ") {
			from, to, _ := strings.Cut(strings.TrimSpace(item), "-")
			if to == "" {
				to = from
			}
			a, err1 := strconv.Atoi(from)
			b, err2 := strconv.Atoi(to)
			if err1 != nil || err2 != nil {
				t.Fatalf("cannot read shards %q in %q", m[3], m[0])
			}
			for n := a; n <= b; n++ {
				moves[n] = m[1] + ">" + m[2]
			}
		}
	}
	return moves
}

// plannedMoves runs pgms plan --format json and returns its moves as
// shard → "from>to" and its other steps by kind.
func plannedMoves(t *testing.T, dir string) (map[int]string, map[planner.StepKind]int) {
	t.Helper()
	r := pgms(t, "", "plan", "--config", dir, "--format", "json").must(t)
	var p planner.Plan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan json: %v\n%s", err, r.stdout)
	}
	moves := map[int]string{}
	others := map[planner.StepKind]int{}
	for _, s := range p.Steps {
		if s.Kind != planner.StepMove {
			others[s.Kind]++
			continue
		}
		if s.Shards.Len() != 1 {
			t.Fatalf("a move of several shards: %+v", s)
		}
		moves[s.Shards.From] = s.From + ">" + s.To
	}
	return moves, others
}

func TestRebalanceWriteThenPlan(t *testing.T) {
	unevenCluster(t)
	dir := t.TempDir()
	file := writeTopology(t, dir, "topology.pgms.hcl", unevenNodes+unevenShards)

	r := pgms(t, "", "rebalance", "--config", dir).must(t)
	out := r.stdout
	if readString(t, file) != unevenNodes+unevenShards {
		t.Fatal("rebalance without --write changed the file")
	}
	// Sizes vary a little with the server version: the golden file holds
	// the moves with sizes masked and the diff; the table is checked here.
	golden.Check(t, "testdata/rebalance_bytes.golden",
		sizePattern.ReplaceAllString(section(out, "4 moves", "Balanced"), "SIZE")+
			strings.ReplaceAll(section(out, "--- ", "Nothing written"), dir, "DIR"))
	for _, want := range []string{
		"Weights by total relation size; tolerance ±5% of each node's fair share.",
		"Balanced: every node ends within ±5% of its fair share.",
		"Nothing written: run again with --write to rewrite the files.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Every node ends within 5% of its fair share.
	rows := regexp.MustCompile(`(?m)^  ([abc])\s+(\d+) → (\d+)\s.*→\s+([-+]\d+\.\d)%$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 3 {
		t.Fatalf("table rows: %q", rows)
	}
	for _, row := range rows {
		if dev, _ := strconv.ParseFloat(row[4], 64); dev < -5 || dev > 5 {
			t.Errorf("node %s ends %s%% from its fair share", row[1], row[4])
		}
	}

	// --write rewrites the file, and plan shows exactly the printed moves.
	printed := printedMoves(t, out)
	if len(printed) < 4 {
		t.Fatalf("moves printed: %v", printed)
	}
	w := pgms(t, "", "rebalance", "--config", dir, "--write").must(t)
	if !strings.Contains(w.stdout, "Wrote "+file+".\n") {
		t.Errorf("--write output:\n%s", w.stdout)
	}
	if !strings.Contains(readString(t, file), "# The first shards.\n") {
		t.Errorf("comment lost:\n%s", readString(t, file))
	}
	planned, others := plannedMoves(t, dir)
	if fmt.Sprint(planned) != fmt.Sprint(printed) || len(others) != 0 {
		t.Errorf("plan moves %v (and %v), rebalance printed %v", planned, others, printed)
	}

	// With the plan not applied, rebalancing again would stack on it.
	again := pgms(t, "", "rebalance", "--config", dir)
	want := fmt.Sprintf("pgms: the cluster does not match the files yet (%d pending steps); run pgms apply first, or pgms plan to see them\n", len(printed))
	if again.code != exitError || again.stderr != want || again.stdout != "" {
		t.Errorf("rebalance on pending moves: exit %d\nstdout:\n%s\nstderr:\n%s\nwant stderr:\n%s", again.code, again.stdout, again.stderr, want)
	}

	// Apply, and the cluster is balanced: every node holds about a third.
	a := pgms(t, "", "apply", "--config", dir, "--auto-approve")
	if a.code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", a.code, a.stdout, a.stderr)
	}
	l := pgms(t, "", "list", "--json", "--dsn", os.Getenv("PGMS_DSN_A"), "--dsn", os.Getenv("PGMS_DSN_B"), "--dsn", os.Getenv("PGMS_DSN_C")).must(t)
	var listed views.List
	if err := json.Unmarshal([]byte(l.stdout), &listed); err != nil {
		t.Fatal(err)
	}
	for _, n := range listed.Nodes {
		if n.Share < 0.28 || n.Share > 0.39 {
			t.Errorf("after apply, node %s holds %.1f%% of the weight:\n%s", n.Node, n.Share*100, l.stdout)
		}
	}
	if p := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode"); p.code != 0 {
		t.Errorf("plan after apply: exit %d\n%s", p.code, p.stdout)
	}
	// Copies can come out a little smaller than their sources, so a last
	// small move may remain; a second rebalance must not undo the first.
	if again := pgms(t, "", "rebalance", "--config", dir).must(t); !strings.Contains(again.stdout, "nothing to move") && len(printedMoves(t, again.stdout)) > 1 {
		t.Errorf("rebalance after apply:\n%s", again.stdout)
	}
}

// countedTopology weighs shards by their row count and places shards 9-12,
// not allocated yet, on b.
const countedTopology = `cluster {
  weight_sql = "SELECT count(*) FROM t"
}
` + unevenNodes + unevenShards + `
shards "9-12" { node = "b" } # new, not allocated yet
`

func TestRebalanceWeightSQL(t *testing.T) {
	unevenCluster(t)
	dir := t.TempDir()
	file := writeTopology(t, dir, "topology.pgms.hcl", countedTopology)

	r := pgms(t, "", "rebalance", "--config", dir).must(t)
	golden.Check(t, "testdata/rebalance_counted.golden", strings.ReplaceAll(sizePattern.ReplaceAllString(r.stdout, "SIZE"), dir, "DIR"))

	// Plain-number weights have no byte budget.
	if r := pgms(t, "", "rebalance", "--config", dir, "--max-bytes", "1MB"); r.code != exitError || !strings.Contains(r.stderr, "--max-bytes needs weights in bytes") {
		t.Errorf("--max-bytes with counted weights: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A move budget gives the best single move and says it falls short.
	one := pgms(t, "", "rebalance", "--config", dir, "--max-moves", "1").must(t)
	if len(printedMoves(t, one.stdout)) != 1 || !strings.Contains(one.stdout, "1 move, weight ") ||
		!strings.Contains(one.stdout, "Budget-limited: the target was not reached within --max-moves 1") {
		t.Errorf("--max-moves 1:\n%s", one.stdout)
	}

	// Draining b empties it.
	drain := pgms(t, "", "rebalance", "--config", dir, "--drain", "b", "--write").must(t)
	if !regexp.MustCompile(`(?m)^  b \(drain\)\s+6 → 0 `).MatchString(drain.stdout) {
		t.Errorf("--drain b:\n%s", drain.stdout)
	}
	top, diags := config.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, sr := range top.Shards {
		if sr.Node == "b" {
			t.Errorf("shards %s still on b after --drain b:\n%s", sr, readString(t, file))
		}
	}
	// Plan moves the allocated shards and allocates the others where
	// rebalance put them.
	printed := printedMoves(t, section(drain.stdout, "", "Balanced"))
	planned, others := plannedMoves(t, dir)
	moved := map[int]string{}
	for n, m := range printed {
		if n <= 8 {
			moved[n] = m
		}
	}
	if fmt.Sprint(planned) != fmt.Sprint(moved) || len(others) != 1 || others[planner.StepAllocate] == 0 {
		t.Errorf("plan moves %v and %v, rebalance printed %v", planned, others, printed)
	}
	// With moves pending and allocations too, the message counts both.
	again := pgms(t, "", "rebalance", "--config", dir)
	if again.code != exitError || !strings.Contains(again.stderr, fmt.Sprintf("the cluster does not match the files yet (%d pending steps, %d of them moves)", len(planned)+others[planner.StepAllocate], len(planned))) {
		t.Errorf("rebalance on pending moves: exit %d\n%s", again.code, again.stderr)
	}
}

func TestRebalanceNothingToMove(t *testing.T) {
	unevenCluster(t)
	dir := t.TempDir()
	file := writeTopology(t, dir, "t.pgms.hcl", `node "a" { dsn = env("PGMS_DSN_A") }
shards "0-6" { node = "a" }
`)
	r := pgms(t, "", "rebalance", "--config", dir, "--write").must(t)
	if r.stdout != "The cluster is balanced within 5%: nothing to move.\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	r = pgms(t, "", "rebalance", "--config", dir, "--tolerance", "2.5").must(t)
	if r.stdout != "The cluster is balanced within 2.5%: nothing to move.\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if readString(t, file) != "node \"a\" { dsn = env(\"PGMS_DSN_A\") }\nshards \"0-6\" { node = \"a\" }\n" {
		t.Error("the file changed")
	}
}

// TestRebalanceErrors covers the mistakes caught before any node is read;
// the nodes' addresses lead nowhere.
func TestRebalanceErrors(t *testing.T) {
	dir := t.TempDir()
	writeTopology(t, dir, "t.pgms.hcl", `node "a" { dsn = "postgres://app@127.0.0.1:1/app" }
node "b" { dsn = "postgres://app@127.0.0.1:1/app" }
node "c" {
  dsn   = "postgres://app@127.0.0.1:1/app"
  drain = true
}
shards "0-4" { node = "a" }
shards "5" {
  node   = "b"
  pinned = true
}
`)
	tests := [][]string{
		{"--drain", "x"},
		{"--drain", "a,b"},
		{"--drain", "b"},
		{"--drain", "a"},
		{"--tolerance", "0"},
		{"--tolerance", "100%"},
		{"--tolerance", "-5%"},
		{"--tolerance", "five"},
		{"--max-bytes", "lots"},
		{"--max-bytes", "0"},
		{"--max-moves", "-1"},
		{}, // the flags are fine; the nodes cannot be read
	}
	var got strings.Builder
	for _, args := range tests {
		r := pgms(t, "", append([]string{"rebalance", "--config", dir}, args...)...)
		if r.code != exitError || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
		label := strings.Join(args, " ")
		if label == "" {
			label = "(no flags)"
		}
		fmt.Fprintf(&got, "%s\n%s\n", label, strings.ReplaceAll(r.stderr, dir, "DIR"))
	}
	golden.Check(t, "testdata/rebalance_errors.golden", got.String())
}

func TestParseTolerance(t *testing.T) {
	tests := []struct {
		in      string
		percent float64
		ok      bool
	}{
		{"5%", 5, true},
		{"5", 5, true},
		{" 2.5 % ", 2.5, true},
		{"99.9%", 99.9, true},
		{"0", 0, false},
		{"100", 0, false},
		{"NaN", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		percent, err := parseTolerance(tt.in)
		if (err == nil) != tt.ok || math.Abs(percent-tt.percent) > 1e-12 {
			t.Errorf("parseTolerance(%q) = %v, %v", tt.in, percent, err)
		}
	}
}
