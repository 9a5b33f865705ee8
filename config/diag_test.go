package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/golden"
)

// testEnv is the environment env() sees in the tests.
var testEnv = map[string]string{
	"PGMS_DSN_OLD1": "postgres://app@db-old1/app",
	"PGMS_DSN_A":    "postgres://app@db-a:5432/app",
	"PGMS_DSN_B":    "postgres://app@db-b:5432/app",
	"PGMS_EMPTY":    "",
}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// warningsOnly are the cases that load, with warnings.
var warningsOnly = map[string]bool{
	"password_literal":       true,
	"publisher_dsn_password": true,
	"shard_zero_unpinned":    true,
}

// TestDiagnostics loads every bad input under testdata/diag (a file, or a
// directory of files) and compares the printed diagnostics with NAME.golden.
func TestDiagnostics(t *testing.T) {
	entries, err := os.ReadDir("testdata/diag")
	if err != nil {
		t.Fatal(err)
	}
	position := regexp.MustCompile(`(?m)^  on testdata/diag/\S+:\d+:\d+`)
	cases := 0
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), FileSuffix)
		if !e.IsDir() && !ok {
			continue
		}
		cases++
		t.Run(name, func(t *testing.T) {
			topo, diags := Load(filepath.Join("testdata/diag", e.Name()), WithLookupEnv(lookupTestEnv))
			if len(diags) == 0 {
				t.Fatal("no diagnostics")
			}
			if diags.HasErrors() == warningsOnly[name] {
				t.Errorf("HasErrors = %v, want %v: %v", diags.HasErrors(), !warningsOnly[name], diags)
			}
			var buf bytes.Buffer
			if err := WriteDiagnostics(&buf, topo.Sources, diags, false); err != nil {
				t.Fatal(err)
			}
			if got := len(position.FindAllString(buf.String(), -1)); got != len(diags) {
				t.Errorf("%d of %d diagnostics name file:line:col:\n%s", got, len(diags), buf.String())
			}
			if strings.Contains(buf.String(), "s3cret") {
				t.Errorf("a password is printed:\n%s", buf.String())
			}
			golden.Check(t, filepath.Join("testdata/diag", name+".golden"), buf.String())
		})
	}
	if cases < 20 {
		t.Errorf("only %d cases", cases)
	}
}

func TestDiagnosticsWithoutFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		path, want string
	}{
		{dir, "holds no *.pgms.hcl file"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
	}
	for _, tt := range tests {
		_, diags := Load(tt.path)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, want an error with %q", tt.path, diags, tt.want)
		}
		var buf bytes.Buffer
		if err := WriteDiagnostics(&buf, nil, diags, false); err != nil || !strings.Contains(buf.String(), tt.want) {
			t.Errorf("WriteDiagnostics = %v, %q", err, buf.String())
		}
	}
}

func TestWriteDiagnosticsColor(t *testing.T) {
	topo, diags := Load("testdata/diag/range_reversed.pgms.hcl", WithLookupEnv(lookupTestEnv))
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, topo.Sources, diags, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\x1b[31mError") {
		t.Errorf("no color:\n%q", buf.String())
	}
}
