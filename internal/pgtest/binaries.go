package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

// FindBinaries looks for the server programs where pgbin looks for client
// programs ($PGMS_PG_BIN, PATH, /usr/lib/postgresql/*/bin newest first):
// the first initdb with a postgres beside it.
func FindBinaries() (Binaries, error) {
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
