package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgms-dev/pgms/internal/pgbin"
)

// Binaries locates one PostgreSQL installation's server programs.
type Binaries struct {
	Dir     string // holds initdb, postgres, pg_ctl, …
	Version int    // major version, e.g. 15
}

// Path returns the full path of a program of this installation.
func (b Binaries) Path(program string) string { return filepath.Join(b.Dir, program) }

// ErrNoBinaries says no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (looked for initdb and postgres in $PGMS_PG_BIN, on PATH and under /usr/lib/postgresql/*/bin); install them, e.g. apt-get install -y postgresql")

// EnvVersion names the variable that picks a PostgreSQL major version from
// the cache scripts/pg-versions.sh fills, instead of the local installation.
const EnvVersion = "PGMS_TEST_PG_VERSION"

// EnvCache names the cache directory of scripts/pg-versions.sh.
const EnvCache = "PGMS_PG_CACHE"

// CacheDir is where scripts/pg-versions.sh installs PostgreSQL versions:
// $PGMS_PG_CACHE, else /var/cache/pgms/postgres for root (whose home the
// unprivileged server account cannot enter), else the user's cache directory.
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/pgms/postgres"
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pgms", "postgres")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pgms", "postgres")
}

// FindBinaries returns the server programs to test with. With
// PGMS_TEST_PG_VERSION set, those of that major version in the cache;
// otherwise it looks where pgbin looks for client programs ($PGMS_PG_BIN,
// PATH, /usr/lib/postgresql/*/bin newest first): the first initdb with a
// postgres beside it.
func FindBinaries() (Binaries, error) {
	if v := os.Getenv(EnvVersion); v != "" {
		return cachedBinaries(v)
	}
	initdb, err := pgbin.Find("initdb", 0)
	if err != nil {
		if errors.Is(err, pgbin.ErrNotFound) {
			return Binaries{}, ErrNoBinaries
		}
		return Binaries{}, fmt.Errorf("%w: %v", ErrNoBinaries, err)
	}
	dir := filepath.Dir(initdb.Path)
	if st, err := os.Stat(filepath.Join(dir, "postgres")); err != nil || st.Mode()&0o111 == 0 {
		return Binaries{}, fmt.Errorf("%w: %s has initdb but no postgres", ErrNoBinaries, dir)
	}
	return Binaries{Dir: dir, Version: initdb.Major}, nil
}

// tool returns the path of a program of this installation that may not sit
// in Dir: Dir can be a directory of links to just initdb, postgres and
// pg_ctl (as in /usr/local/bin on some machines), while the installation's
// own bin directory, where postgres really lives, has every program.
func (b Binaries) tool(program string) string {
	p := b.Path(program)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(b.Path("postgres")); err == nil {
		if q := filepath.Join(filepath.Dir(real), program); q != p {
			if _, err := os.Stat(q); err == nil {
				return q
			}
		}
	}
	return p
}

// cachedBinaries returns the cached server programs of a major version.
func cachedBinaries(v string) (Binaries, error) {
	major, err := strconv.Atoi(v)
	if err != nil || major < 10 {
		return Binaries{}, fmt.Errorf("%s=%q: want a PostgreSQL major version such as 17", EnvVersion, v)
	}
	dir := filepath.Join(CacheDir(), v, "bin")
	install := fmt.Sprintf("scripts/pg-versions.sh install %d", major)
	if os.Getenv(EnvCache) != "" {
		install = EnvCache + "=" + os.Getenv(EnvCache) + " " + install
	}
	for _, prog := range []string{"initdb", "postgres", "pg_ctl"} {
		if st, err := os.Stat(filepath.Join(dir, prog)); err != nil || st.Mode()&0o111 == 0 {
			return Binaries{}, versionMissing(fmt.Sprintf("%s=%d: PostgreSQL %d is not installed in %s (no %s); run: %s",
				EnvVersion, major, major, dir, prog, install))
		}
	}
	p, err := pgbin.Probe(filepath.Join(dir, "initdb"))
	if err != nil {
		return Binaries{}, versionMissing(fmt.Sprintf("%s=%d: %s: %v (reinstall: %s)", EnvVersion, major, filepath.Join(dir, "initdb"), err, install))
	}
	if p.Major != major {
		return Binaries{}, versionMissing(fmt.Sprintf("%s=%d: %s holds PostgreSQL %s (reinstall: %s)", EnvVersion, major, dir, p.Version, install))
	}
	return Binaries{Dir: dir, Version: major}, nil
}

// versionMissing is the error of a cached version that is not installed
// (or not usable); errors.Is matches it to errVersionMissing.
type versionMissing string

func (e versionMissing) Error() string { return string(e) }

// Is makes errors.Is(err, errVersionMissing) true.
func (versionMissing) Is(target error) bool { return target == errVersionMissing }

// CachedClientDir returns the bin directory of the oldest cached client
// installation (client-N) able to dump servers of major version major, or
// "" when none is cached.
func CachedClientDir(major int) string {
	dirs, _ := filepath.Glob(filepath.Join(CacheDir(), "client-*", "bin"))
	best, bestMajor := "", 0
	for _, d := range dirs {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(d)), "client-"))
		if err != nil || n < major {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_dump")); err != nil {
			continue
		}
		if best == "" || n < bestMajor {
			best, bestMajor = d, n
		}
	}
	return best
}

// useCachedClients points PGMS_PG_BIN, when unset, at the cached client
// programs suited to a server version chosen with PGMS_TEST_PG_VERSION, so
// that pgms under test finds a pg_dump able to dump it.
func useCachedClients(b Binaries) {
	if os.Getenv(EnvVersion) == "" || os.Getenv(pgbin.EnvDir) != "" {
		return
	}
	if d := CachedClientDir(b.Version); d != "" {
		os.Setenv(pgbin.EnvDir, d)
	}
}

// checkReachable says when the account the servers run as cannot enter
// every directory above the binaries (e.g. a cache under root's home).
func checkReachable(dir string, u serverUser) error {
	if u.credential == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		switch {
		case !ok, mode&0o001 != 0:
		case sys.Uid == u.UID && mode&0o100 != 0:
		case sys.Gid == u.GID && mode&0o010 != 0:
		default:
			return fmt.Errorf("the servers run as %s, who cannot enter %s (mode %o) to reach %s; install the binaries elsewhere (e.g. set %s)", u.Name, d, mode, dir, EnvCache)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// initdbArgs are the initdb options for a major version.
func initdbArgs(version int) []string {
	args := []string{"-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if version >= 14 {
		args = append(args, "--no-instructions")
	}
	return args
}
