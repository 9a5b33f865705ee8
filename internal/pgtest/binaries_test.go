package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCachedClientDir(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(EnvCache, cache)
	for _, c := range []string{"client-17", "client-18", "client-x"} {
		bin := filepath.Join(cache, c, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for major, want := range map[int]string{13: "client-17", 17: "client-17", 18: "client-18", 19: ""} {
		got := CachedClientDir(major)
		if want != "" {
			want = filepath.Join(cache, want, "bin")
		}
		if got != want {
			t.Errorf("CachedClientDir(%d) = %q, want %q", major, got, want)
		}
	}
}

func TestCachedBinariesNotInstalled(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	t.Setenv(EnvVersion, "16")
	_, err := FindBinaries()
	if err == nil || !strings.Contains(err.Error(), "scripts/pg-versions.sh install 16") {
		t.Errorf("got %v, want the install command", err)
	}
	t.Setenv(EnvVersion, "sixteen")
	if _, err := FindBinaries(); err == nil || !strings.Contains(err.Error(), "major version") {
		t.Errorf("got %v", err)
	}
}

func TestInitdbArgs(t *testing.T) {
	for version, want := range map[int]bool{13: false, 14: true, 18: true} {
		got := strings.Contains(strings.Join(initdbArgs(version), " "), "--no-instructions")
		if got != want {
			t.Errorf("version %d: --no-instructions %v, want %v", version, got, want)
		}
	}
}
