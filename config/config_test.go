package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mustLoad loads path and fails the test on any diagnostic, warnings too.
func mustLoad(t *testing.T, path string, opts ...Option) *Topology {
	t.Helper()
	topo, diags := Load(path, opts...)
	if len(diags) > 0 {
		var b strings.Builder
		WriteDiagnostics(&b, topo.Sources, diags, false)
		t.Fatalf("Load(%s):\n%s", path, b.String())
	}
	return topo
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "topology.pgms.hcl"), `
node "b" { dsn = "postgres://app@db-b/app" }
node "a" { dsn = "postgres://app@db-a/app" }
shards "5-9" { node = "b" }
shards "0-4" { node = "a" }
`)
	topo := mustLoad(t, dir)
	want := Cluster{
		SchemaPrefix: "sh", SchemaDigits: 4, CleanupAfter: 168 * time.Hour,
		LibrarySchema: "microsharding", StateNode: "a",
	}
	if !reflect.DeepEqual(topo.Cluster, want) {
		t.Errorf("Cluster = %+v, want %+v", topo.Cluster, want)
	}
	if len(topo.Nodes) != 2 || topo.Nodes[0].Name != "a" || topo.Nodes[1].Name != "b" {
		t.Fatalf("Nodes = %+v, want a and b in order", topo.Nodes)
	}
	for _, n := range topo.Nodes {
		if n.Drain || n.MaxConcurrentMoves != 1 || n.Capacity != 1.0 {
			t.Errorf("node %s = %+v, want defaults", n.Name, n)
		}
	}
	if n := topo.Nodes[0]; n.DSN != "postgres://app@db-a/app" || n.DSNExpr != `"postgres://app@db-a/app"` {
		t.Errorf("node a DSN %q, DSNExpr %q", n.DSN, n.DSNExpr)
	}
	if len(topo.Shards) != 2 || topo.Shards[0].From != 0 || topo.Shards[1].From != 5 {
		t.Fatalf("Shards = %+v, want sorted by From", topo.Shards)
	}
	for _, r := range topo.Shards {
		if !r.Active || r.Pinned {
			t.Errorf("range %s: Active %v Pinned %v, want true false", r, r.Active, r.Pinned)
		}
	}
	if got := Pos(topo.Shards[1].DeclRange); got != filepath.Join(dir, "topology.pgms.hcl")+":4" {
		t.Errorf("Pos = %s", got)
	}
	if got, want := topo.Files, []string{filepath.Join(dir, "topology.pgms.hcl")}; !reflect.DeepEqual(got, want) {
		t.Errorf("Files = %v, want %v", got, want)
	}
}

func TestLoadMultipleFiles(t *testing.T) {
	t.Setenv("PGMS_DSN_A", "postgres://app@db-a/app")
	t.Setenv("PGMS_DSN_B", "postgres://app@db-b/app")
	topo := mustLoad(t, "testdata/good/multi")
	wantFiles := []string{
		"testdata/good/multi/cluster.pgms.hcl",
		"testdata/good/multi/nodes.pgms.hcl",
		"testdata/good/multi/shards.pgms.hcl",
	}
	if !reflect.DeepEqual(topo.Files, wantFiles) {
		t.Errorf("Files = %v, want %v (notes.hcl and sub/ are not read)", topo.Files, wantFiles)
	}
	c := topo.Cluster
	want := Cluster{
		SchemaPrefix: "shard_", SchemaDigits: 5,
		MigrateCommand: []string{"./migrate.sh", "--up"},
		WeightSQL:      "SELECT pg_total_relation_size('users')",
		DeactivateSQL:  "CREATE TRIGGER reject BEFORE INSERT ON $1 EXECUTE FUNCTION reject()",
		CleanupAfter:   36 * time.Hour, LibrarySchema: "ms", StateNode: "b",
		DeclRange: topo.Cluster.DeclRange,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Cluster = %+v\nwant %+v", c, want)
	}
	if Pos(c.DeclRange) != "testdata/good/multi/cluster.pgms.hcl:2" {
		t.Errorf("cluster at %s", Pos(c.DeclRange))
	}
	var names []string
	for _, n := range topo.Nodes {
		names = append(names, n.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
		t.Errorf("nodes %v", names)
	}
	b, _ := topo.Node("b")
	if b.MaxConcurrentMoves != 2 || b.Capacity != 2.5 || b.DSN != "postgres://app@db-b/app" ||
		b.PublisherDSN != "host=db-b.internal dbname=app user=pgms passfile=/etc/pgms/pgpass" {
		t.Errorf("node b = %+v", b)
	}
	if a, _ := topo.Node("a"); a.PublisherDSN != "" {
		t.Errorf("node a has publisher_dsn %q", a.PublisherDSN)
	}
	cn, _ := topo.Node("c")
	if !cn.Drain || cn.DSN != "postgres://app@db-c:5432/app" {
		t.Errorf("node c = %+v", cn)
	}
	var got []string
	for _, r := range topo.Shards {
		got = append(got, r.String()+"@"+r.Node)
	}
	if want := []string{"0@a", "1-128@a", "129-256@b", "257-260@c", "300@b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("shards %v, want %v", got, want)
	}
	if r := topo.Shards[3]; r.Active {
		t.Errorf("257-260 active")
	}
	if r := topo.Shards[4]; !r.Pinned || !r.IsPinned(300) {
		t.Errorf("300 not pinned")
	}
	if !topo.Shards[0].IsPinned(0) || topo.Shards[1].IsPinned(1) {
		t.Errorf("IsPinned: shard 0 must be pinned, shard 1 not")
	}
	if len(topo.Removed) != 1 || topo.Removed[0].String() != "400-410" || topo.Removed[0].Node != "" {
		t.Errorf("Removed = %+v", topo.Removed)
	}
	if n, a := topo.Counts(); n != 262 || a != 258 {
		t.Errorf("Counts = %d, %d; want 262, 258", n, a)
	}
	if got := topo.SchemaName(7); got != "shard_00007" {
		t.Errorf("SchemaName(7) = %q", got)
	}
}

func TestEnv(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "t.pgms.hcl"), `
node "a" { dsn = env("PGMS_TEST_DSN") }
node "b" { dsn = env("PGMS_TEST_UNSET", "postgres://app@fallback/app") }
node "c" { dsn = env("PGMS_TEST_SET", "postgres://app@fallback/app") }
`)
	t.Setenv("PGMS_TEST_DSN", "postgres://app@from-env/app")
	t.Setenv("PGMS_TEST_SET", "postgres://app@set/app")
	os.Unsetenv("PGMS_TEST_UNSET")
	topo := mustLoad(t, dir)
	want := map[string]string{
		"a": "postgres://app@from-env/app",
		"b": "postgres://app@fallback/app",
		"c": "postgres://app@set/app",
	}
	for _, n := range topo.Nodes {
		if n.DSN != want[n.Name] {
			t.Errorf("node %s: DSN %q, want %q", n.Name, n.DSN, want[n.Name])
		}
	}
	if a, _ := topo.Node("a"); a.DSNExpr != `env("PGMS_TEST_DSN")` {
		t.Errorf("DSNExpr = %q", a.DSNExpr)
	}

	// Unset without default: an error, or a warning when allowed.
	os.Unsetenv("PGMS_TEST_DSN")
	if _, diags := Load(dir); !diags.HasErrors() || !strings.Contains(diags.Error(), "PGMS_TEST_DSN is not set") {
		t.Errorf("unset variable: %v", diags)
	}
	topo, diags := Load(dir, AllowUnsetEnv())
	if diags.HasErrors() || len(diags) != 1 {
		t.Fatalf("AllowUnsetEnv: %v", diags)
	}
	if a, _ := topo.Node("a"); a.DSN != "" {
		t.Errorf("DSN of an unset variable = %q", a.DSN)
	}
}

func TestFileFunction(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secrets", "a.dsn"), "postgres://app@db-a/app\n")
	writeFile(t, filepath.Join(dir, "b.sql"), "SELECT 1\r\n")
	writeFile(t, filepath.Join(dir, "conf", "t.pgms.hcl"), `
cluster { weight_sql = file("../b.sql") }
node "a" { dsn = file("../secrets/a.dsn") }
`)
	// Relative to the topology file, not to the working directory.
	topo := mustLoad(t, filepath.Join(dir, "conf"))
	if a, _ := topo.Node("a"); a.DSN != "postgres://app@db-a/app" {
		t.Errorf("DSN = %q", a.DSN)
	}
	if topo.Cluster.WeightSQL != "SELECT 1" {
		t.Errorf("WeightSQL = %q", topo.Cluster.WeightSQL)
	}
}

func TestMigrateCommandString(t *testing.T) {
	topo, diags := LoadSources(map[string][]byte{"t.pgms.hcl": []byte(`cluster { migrate_command = "./migrate.sh up && echo done" }`)})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if want := []string{"/bin/sh", "-c", "./migrate.sh up && echo done"}; !reflect.DeepEqual(topo.Cluster.MigrateCommand, want) {
		t.Errorf("MigrateCommand = %q, want %q", topo.Cluster.MigrateCommand, want)
	}
}

func TestRangeLabels(t *testing.T) {
	tests := []struct {
		in       string
		from, to int
		ok       bool
		suggest  string
	}{
		{"0", 0, 0, true, ""}, {"1-128", 1, 128, true, ""}, {" 3 - 5 ", 3, 5, true, ""}, {"007", 7, 7, true, ""},
		{"5-5", 5, 5, true, ""}, {"", 0, 0, false, ""}, {"1-", 0, 0, false, "1"}, {"a-b", 0, 0, false, ""},
		{"5-3", 0, 0, false, "3-5"}, {"-3", 0, 0, false, "3"}, {"+3", 0, 0, false, "3"}, {"1-2-3", 0, 0, false, ""},
		{"99999999999999999999", 0, 0, false, ""},
	}
	for _, tt := range tests {
		from, to, err := ParseRange(tt.in)
		if (err == nil) != tt.ok || from != tt.from || to != tt.to {
			t.Errorf("ParseRange(%q) = %d, %d, %v", tt.in, from, to, err)
			continue
		}
		if err != nil && err.(*rangeError).Suggestion != tt.suggest {
			t.Errorf("ParseRange(%q) suggests %q, want %q", tt.in, err.(*rangeError).Suggestion, tt.suggest)
		}
	}
}

func TestTopologyMethods(t *testing.T) {
	topo := mustLoad(t, "testdata/good/multi", WithLookupEnv(lookupTestEnv))
	if _, ok := topo.Node("d"); ok {
		t.Error("Node(d) found")
	}
	if n, ok := topo.Node("c"); !ok || n.Name != "c" {
		t.Errorf("Node(c) = %v, %v", n, ok)
	}
	p := topo.Placement()
	if len(p) != 262 || p[0].Node != "a" || p[128].Node != "a" || p[129].Node != "b" || p[258].Active || p[300].Node != "b" {
		t.Errorf("Placement wrong: %d shards", len(p))
	}
	if _, ok := p[299]; ok {
		t.Error("shard 299 placed")
	}

	// The fingerprint follows content, not the way the directory is named.
	f1 := topo.Fingerprint()
	again := mustLoad(t, "./testdata/../testdata/good/multi/", WithLookupEnv(lookupTestEnv))
	if f2 := again.Fingerprint(); f2 != f1 {
		t.Errorf("Fingerprint changed with the directory name: %s, %s", f1, f2)
	}
	again.Sources[again.Files[0]] = append(append([]byte(nil), again.Sources[again.Files[0]]...), '\n')
	if again.Fingerprint() == f1 {
		t.Error("Fingerprint ignores content")
	}
	if len(f1) != 64 {
		t.Errorf("Fingerprint %q is not sha256 hex", f1)
	}
}

// TestDocGrammar loads the grammar example of the package documentation,
// so that the documentation stays true.
func TestDocGrammar(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "// # Grammar\n")
	var example strings.Builder
	for _, line := range strings.Split(rest, "\n") {
		if l, ok := strings.CutPrefix(line, "//\t"); ok {
			example.WriteString(l + "\n")
		} else if line != "//" {
			break
		}
	}
	if !strings.Contains(example.String(), "removed {") {
		t.Fatalf("grammar example not found:\n%s", example.String())
	}
	topo, diags := LoadSources(map[string][]byte{"doc.pgms.hcl": []byte(example.String())}, WithLookupEnv(lookupTestEnv))
	if len(diags) > 0 {
		t.Fatalf("%v\n%s", diags, example.String())
	}
	if n, a := topo.Counts(); n != 262 || a != 258 {
		t.Errorf("Counts = %d, %d", n, a)
	}
}

func TestExampleBasic(t *testing.T) {
	env := WithLookupEnv(func(name string) (string, bool) {
		return map[string]string{
			"PGMS_DSN_A": "postgres://app@a/app", "PGMS_DSN_B": "postgres://app@b/app", "PGMS_DSN_C": "postgres://app@c/app",
		}[name], strings.HasPrefix(name, "PGMS_DSN_")
	})
	topo := mustLoad(t, "../examples/basic", env)
	if n, a := topo.Counts(); n != 13 || a != 11 || len(topo.Nodes) != 3 {
		t.Errorf("examples/basic: %d nodes, %d shards, %d active", len(topo.Nodes), n, a)
	}
	formatted, diags := Format(topo.Sources[topo.Files[0]], topo.Files[0])
	if diags.HasErrors() || string(formatted) != string(topo.Sources[topo.Files[0]]) {
		t.Errorf("examples/basic is not formatted: run pgms fmt --config examples/basic")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGrammarText checks the help text made from the documentation: it
// starts at the files, keeps the grammar and ends before Go's package
// clause.
func TestGrammarText(t *testing.T) {
	g := Grammar()
	for _, want := range []string{"FILES\n", "GRAMMAR\n", "    node \"a\" {\n", "publisher_dsn", "DIAGNOSTICS\n"} {
		if !strings.Contains(g, want) {
			t.Errorf("grammar text lacks %q", want)
		}
	}
	if !strings.HasPrefix(g, "FILES\n") || strings.Contains(g, "package config") || strings.Contains(g, "\n//") {
		t.Errorf("grammar text:\n%s", g)
	}
}
