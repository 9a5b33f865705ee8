package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// The command tests share three servers. The test binary is the pgms of
// the scripts too (see TestScripts): run under that name it is pgms, and
// starts no server.
func TestMain(m *testing.M) {
	testscript.Main(withServers{m}, map[string]func(){
		"pgms": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// withServers runs the tests with the package's servers started.
type withServers struct{ m *testing.M }

func (w withServers) Run() int { return pgtest.Main(w.m, 3) }

// result is what one pgms invocation printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// pgms runs the command in-process with the given standard input.
func pgms(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// must fails the test unless the command exited 0.
func (r result) must(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}
