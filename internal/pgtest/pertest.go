package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// EnvRequireVersions names the variable that makes a test fail, rather than
// skip, when a major version it asks for (Options.Version) is not
// installed. make test-matrix sets it, since it installs every version
// first; make test does not, so that a machine without the cache skips
// those tests.
const EnvRequireVersions = "PGMS_REQUIRE_PG_VERSIONS"

// errVersionMissing marks a failure to find the binaries of the version
// Options.Version asked for.
var errVersionMissing = errors.New("PostgreSQL version not installed")

var perTestCounter atomic.Int64

// StartServers starts n servers for one test, beside the package's shared
// ones, and removes them when the test ends. Options pick the major version
// (Version), the pg_hba.conf rules (HBA) and files in the data directory
// (Files: certificates and keys), which the shared servers cannot have.
//
// A version that is not installed skips the test, naming the install
// command, or fails it under PGMS_REQUIRE_PG_VERSIONS=1; no local server at
// all skips it, or fails it under PGMS_REQUIRE_POSTGRES=1. With
// PGMS_TEST_DSNS or another backend the test is skipped: those cannot
// start servers on demand.
func StartServers(t testing.TB, n int, opts Options) []*Server {
	t.Helper()
	if os.Getenv("PGMS_TEST_DSNS") != "" {
		t.Skip("this test starts servers of its own, which PGMS_TEST_DSNS cannot")
	}
	if name := os.Getenv("PGMS_TEST_BACKEND"); name != "" && name != "local" {
		t.Skipf("this test starts servers of its own, which PGMS_TEST_BACKEND=%s cannot", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("t%d_", perTestCounter.Add(1))
	if opts.Version != 0 {
		prefix = fmt.Sprintf("t%d_pg%d_", perTestCounter.Load(), opts.Version)
	}
	c, err := startLocalNamed(ctx, n, prefix, opts)
	switch {
	case err == nil:
	case opts.Version != 0 && errors.Is(err, errVersionMissing):
		if os.Getenv(EnvRequireVersions) == "1" {
			t.Fatalf("PostgreSQL %d is required (%s=1): %v", opts.Version, EnvRequireVersions, err)
		}
		t.Skipf("PostgreSQL %d is not installed: %v", opts.Version, err)
	case errors.Is(err, ErrNoBinaries) && os.Getenv("PGMS_REQUIRE_POSTGRES") != "1":
		t.Skipf("no PostgreSQL test servers: %v", err)
	default:
		t.Fatalf("pgtest: start %d servers: %v", n, err)
	}
	t.Cleanup(c.Close)
	return c.Servers
}

// VersionInstalled reports whether the servers of a major version are in
// the cache scripts/pg-versions.sh fills.
func VersionInstalled(major int) bool {
	_, err := cachedBinaries(fmt.Sprint(major))
	return err == nil
}

// writeDataFiles puts opts.Files and opts.HBA into a data directory that
// is not running yet; the caller hands the directory to the server account.
func writeDataFiles(data string, opts Options) error {
	names := make([]string, 0, len(opts.Files))
	for name := range opts.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name != filepath.Base(name) || name == "." || name == ".." {
			return fmt.Errorf("data file %q: give a plain file name", name)
		}
		if err := os.WriteFile(filepath.Join(data, name), opts.Files[name], 0o600); err != nil {
			return err
		}
	}
	if opts.HBA != nil {
		text := "# pg_hba.conf of a pgtest server (Options.HBA).\n" + strings.Join(opts.HBA, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes a file into the server's own directory (beside its data
// directory), owned by the account the server runs as and readable by it
// alone, and returns its path. The servers of a test run as the same
// account, so any of them can read it: this is where a subscription's
// passfile, sslrootcert or sslkey go, which the destination server reads
// itself (libpq refuses a key or password file others can read).
func (s *Server) WriteFile(name string, data []byte) (string, error) {
	if !s.owned {
		return "", errors.New("pgtest: files go beside servers the harness started itself")
	}
	if name != filepath.Base(name) || name == "." || name == ".." || name == "data" {
		return "", fmt.Errorf("pgtest: file %q: give a plain file name other than data", name)
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	if err := s.user.own(path); err != nil {
		return "", err
	}
	return path, nil
}
