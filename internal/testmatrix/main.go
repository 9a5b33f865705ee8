// Command testmatrix runs test packages once per PostgreSQL major version
// and prints a table of the results (make test-matrix).
//
//	go run ./internal/testmatrix [-versions 13,14,15,16,17,18] [-p 2] [packages]
//
// Each version's servers come from the cache scripts/pg-versions.sh fills
// (PGMS_TEST_PG_VERSION), and PGMS_PG_BIN points at the cached client
// programs suited to it, so that pgms finds a pg_dump able to dump it.
// Tests that start servers of other versions themselves (moves between
// majors) fail rather than skip when those are missing
// (PGMS_REQUIRE_PG_VERSIONS=1). The
// version "local" runs on the machine's own installation, as make test does.
// go test's JSON output of every run is kept in -logs.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

var defaultPackages = []string{"./sql", "./state", "./executor", "./executor/asused", "./cmd/pgms"}

// event is one line of go test -json.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// pkgResult is one package's outcome in one version's run.
type pkgResult struct {
	result              string // pass, FAIL, skip, or "no result"
	passed, failed, skp int
	elapsed             time.Duration
	failures, skips     []string // test names
	output              map[string][]string
	// tests holds the outcome of every test and subtest by name.
	tests map[string]testResult
}

// testResult is one test's outcome in one version's run.
type testResult struct {
	action  string // pass, fail or skip
	elapsed time.Duration
}

// highlights are the tests of PostgreSQL as users run it, shown per
// version in a table of their own: moves between majors, least privilege,
// TLS and passwords, failover slots, binary initial sync.
var highlights = []string{
	"TestMoveToNewerMajor", "TestMovePrivileges", "TestMoveOverTLS", "TestApplyAsUsed", "TestFailoverSlots", "TestNativeCopyBinary",
}

// highlightSubtests are the highlighted tests whose subtests are shown too:
// the pairs of versions moved between, the ways a subscription connects.
var highlightSubtests = []string{"TestMoveToNewerMajor", "TestMoveOverTLS"}

type run struct {
	version string
	client  string // what pg_dump the run used
	wall    time.Duration
	err     error
	pkgs    map[string]*pkgResult
}

func main() {
	versions := flag.String("versions", "13,14,15,16,17,18", "PostgreSQL major versions, separated by commas or spaces; \"local\" is the machine's own installation")
	parallel := flag.Int("p", 2, "test packages run at once (go test -p)")
	timeout := flag.String("timeout", "30m", "go test -timeout for each version")
	logs := flag.String("logs", filepath.Join(os.TempDir(), "pgms-test-matrix"), "directory for go test -json output")
	script := flag.String("script", "scripts/pg-versions.sh", "the installer script, asked for each version's client directory")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = defaultPackages
	}
	if err := os.MkdirAll(*logs, 0o755); err != nil {
		fatal(err)
	}

	var runs []*run
	for _, v := range strings.FieldsFunc(*versions, func(r rune) bool { return r == ',' || r == ' ' }) {
		r := runVersion(v, pkgs, *parallel, *timeout, *logs, *script)
		runs = append(runs, r)
		fmt.Fprintf(os.Stderr, "testmatrix: PostgreSQL %s done in %v\n", v, r.wall.Round(100*time.Millisecond))
	}
	failed := report(os.Stdout, runs, pkgs, *logs)
	if failed {
		os.Exit(1)
	}
}

func runVersion(v string, pkgs []string, parallel int, timeout, logs, script string) *run {
	r := &run{version: v, pkgs: map[string]*pkgResult{}}
	env := os.Environ()
	// Every version is installed before the runs, so a test asking for a
	// version that is missing fails instead of skipping.
	env = append(env, "PGMS_REQUIRE_POSTGRES=1", "PGMS_REQUIRE_PG_VERSIONS=1")
	if v != "local" {
		out, err := exec.Command(script, "client-dir", v).Output()
		if err != nil {
			r.err = fmt.Errorf("%s client-dir %s: %v", script, v, err)
			return r
		}
		dir := strings.TrimSpace(string(out))
		env = append(env, "PGMS_TEST_PG_VERSION="+v, "PGMS_PG_BIN="+dir)
		r.client = clientVersion(filepath.Join(dir, "pg_dump"))
	} else {
		r.client = "found by pgbin"
	}

	logPath := filepath.Join(logs, "pg"+v+".json")
	logFile, err := os.Create(logPath)
	if err != nil {
		r.err = err
		return r
	}
	defer logFile.Close()
	args := append([]string{"test", "-json", "-count=1", "-p", fmt.Sprint(parallel), "-timeout", timeout}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = env
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.err = err
		return r
	}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		r.err = err
		return r
	}
	parse(io.TeeReader(stdout, logFile), r)
	if err := cmd.Wait(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			r.err = err
		}
	}
	r.wall = time.Since(begin)
	return r
}

func clientVersion(pgDump string) string {
	out, err := exec.Command(pgDump, "--version").Output()
	if err != nil {
		return "none (" + pgDump + ": " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(out))
	return strings.TrimPrefix(s, "pg_dump (PostgreSQL) ")
}

func parse(r io.Reader, run *run) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Package == "" {
			continue
		}
		p := run.pkgs[e.Package]
		if p == nil {
			p = &pkgResult{result: "no result", output: map[string][]string{}, tests: map[string]testResult{}}
			run.pkgs[e.Package] = p
		}
		top := e.Test
		if i := strings.IndexByte(top, '/'); i >= 0 {
			top = top[:i]
		}
		if e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
			p.tests[e.Test] = testResult{action: e.Action, elapsed: time.Duration(e.Elapsed * float64(time.Second))}
		}
		switch {
		case e.Action == "output":
			p.output[top] = append(p.output[top], e.Output)
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			p.result = map[string]string{"pass": "pass", "fail": "FAIL", "skip": "skip"}[e.Action]
			p.elapsed = time.Duration(e.Elapsed * float64(time.Second))
		case e.Test != top:
			// Subtests count through their parent.
		case e.Action == "pass":
			p.passed++
		case e.Action == "fail":
			p.failed++
			p.failures = append(p.failures, e.Test)
		case e.Action == "skip":
			p.skp++
			p.skips = append(p.skips, e.Test)
		}
	}
}

// lookup finds the result of a package given as ./dir.
func lookup(r *run, pkg string) *pkgResult {
	suffix := strings.TrimPrefix(pkg, ".")
	for name, p := range r.pkgs {
		if strings.HasSuffix(name, suffix) {
			return p
		}
	}
	return nil
}

func report(w io.Writer, runs []*run, pkgs []string, logs string) (failed bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PostgreSQL\tpg_dump\tpackage\tresult\ttests pass/fail/skip\ttime")
	for _, r := range runs {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t\t\terror: %v\t\t\n", r.version, r.err)
			failed = true
			continue
		}
		for _, pkg := range pkgs {
			p := lookup(r, pkg)
			if p == nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\tno result\t\t\n", r.version, r.client, pkg)
				failed = true
				continue
			}
			if p.result != "pass" {
				failed = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d/%d\t%.1fs\n", r.version, r.client, pkg, p.result, p.passed, p.failed, p.skp, p.elapsed.Seconds())
		}
		fmt.Fprintf(tw, "%s\t\t(all, wall clock)\t\t\t%.1fs\n", r.version, r.wall.Seconds())
	}
	tw.Flush()
	writeHighlights(w, runs)

	for _, r := range runs {
		for _, pkg := range pkgs {
			p := lookup(r, pkg)
			if p == nil {
				continue
			}
			for _, name := range p.failures {
				fmt.Fprintf(w, "\n--- PostgreSQL %s, %s: %s failed:\n", r.version, pkg, name)
				fmt.Fprint(w, tail(p.output[name], 30))
			}
		}
	}
	// Skips: one line per test and reason, with the versions it was skipped on.
	type skipKey struct{ pkg, test, reason string }
	skips := map[skipKey][]string{}
	for _, r := range runs {
		for _, pkg := range pkgs {
			p := lookup(r, pkg)
			if p == nil {
				continue
			}
			for _, name := range p.skips {
				k := skipKey{pkg, name, skipReason(p.output[name])}
				skips[k] = append(skips[k], r.version)
			}
		}
	}
	if len(skips) > 0 {
		keys := make([]skipKey, 0, len(skips))
		for k := range skips {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].pkg != keys[j].pkg {
				return keys[i].pkg < keys[j].pkg
			}
			return keys[i].test < keys[j].test
		})
		fmt.Fprintln(w, "\nskipped tests:")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s %s on %s: %s\n", k.pkg, k.test, strings.Join(skips[k], ","), k.reason)
		}
	}
	fmt.Fprintf(w, "\ngo test -json output: %s\n", logs)
	return failed
}

// writeHighlights prints, for each highlighted test that ran, one line per
// test and subtest with its outcome and time on every version.
func writeHighlights(w io.Writer, runs []*run) {
	found := map[string]map[string]testResult{} // test → version → result
	var names []string
	for _, r := range runs {
		for _, p := range r.pkgs {
			for name, res := range p.tests {
				top, _, sub := strings.Cut(name, "/")
				if !slices.Contains(highlights, top) || sub && !slices.Contains(highlightSubtests, top) {
					continue
				}
				if found[name] == nil {
					found[name] = map[string]testResult{}
					names = append(names, name)
				}
				found[name][r.version] = res
			}
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Slice(names, func(i, j int) bool {
		ti, _, _ := strings.Cut(names[i], "/")
		tj, _, _ := strings.Cut(names[j], "/")
		if ti != tj {
			return slices.Index(highlights, ti) < slices.Index(highlights, tj)
		}
		return names[i] < names[j]
	})
	fmt.Fprintln(w, "\nPostgreSQL as users run it (result, seconds):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "test"
	for _, r := range runs {
		header += "	" + r.version
	}
	fmt.Fprintln(tw, header)
	for _, name := range names {
		line := name
		for _, r := range runs {
			res, ok := found[name][r.version]
			switch {
			case !ok:
				line += "	-"
			case res.action == "pass":
				line += fmt.Sprintf("	pass %.1f", res.elapsed.Seconds())
			default:
				line += "	" + res.action
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// skipReason is the message a test gave to t.Skip: the output line before
// its "--- SKIP" line.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		if len(l) > 160 {
			l = l[:160] + "…"
		}
		return l
	}
	return "(no reason given)"
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "testmatrix:", err)
	os.Exit(2)
}
