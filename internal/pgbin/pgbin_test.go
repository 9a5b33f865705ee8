package pgbin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeProgram(t *testing.T, dir, version string) {
	t.Helper()
	script := "#!/bin/sh\necho 'pg_dump (PostgreSQL) " + version + "'\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindPrefersEnvDirWhenNewEnough(t *testing.T) {
	dir := t.TempDir()
	fakeProgram(t, dir, "99.1")
	t.Setenv(EnvDir, dir)
	t.Setenv("PATH", "")
	p, err := PgDump(15)
	if err != nil {
		t.Fatal(err)
	}
	if p.Path != filepath.Join(dir, "pg_dump") || p.Major != 99 || p.Version != "99.1" {
		t.Fatalf("got %+v", p)
	}
}

func TestFindSkipsTooOld(t *testing.T) {
	old := t.TempDir()
	fakeProgram(t, old, "9.6.24")
	t.Setenv(EnvDir, old)
	t.Setenv("PATH", "")
	p, err := PgDump(10)
	if err == nil {
		// A newer pg_dump installed under /usr/lib/postgresql may satisfy it.
		if p.Major < 10 {
			t.Fatalf("returned a too old pg_dump: %+v", p)
		}
		return
	}
	if !strings.Contains(err.Error(), "version 9.6") {
		t.Fatalf("error does not list the old version: %v", err)
	}
}

func TestFindNothing(t *testing.T) {
	t.Setenv(EnvDir, t.TempDir())
	t.Setenv("PATH", "")
	_, err := Find("pgms-no-such-program", 15)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestFindInstalled(t *testing.T) {
	if _, err := os.Stat("/usr/lib/postgresql"); err != nil {
		t.Skip("no PostgreSQL installation under /usr/lib/postgresql")
	}
	t.Setenv(EnvDir, "")
	p, err := PgDump(0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Major < 10 {
		t.Fatalf("implausible version %+v", p)
	}
}
