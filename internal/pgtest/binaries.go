package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
)

// Binaries locates one PostgreSQL installation's server programs.
type Binaries struct {
	Dir     string // holds initdb, postgres, pg_dump, …
	Version int    // major version, e.g. 15
}

// Path returns the full path of a program of this installation.
func (b Binaries) Path(program string) string { return filepath.Join(b.Dir, program) }

// ErrNoBinaries says no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (looked for initdb and postgres on PATH, in $PGMS_PG_BIN and under /usr/lib/postgresql/*/bin); install them, e.g. apt-get install -y postgresql")

var versionOutput = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// FindBinaries looks for initdb and postgres in $PGMS_PG_BIN, on PATH, then
// under /usr/lib/postgresql/*/bin, preferring the newest major version there.
func FindBinaries() (Binaries, error) {
	var candidates []string
	if dir := os.Getenv("PGMS_PG_BIN"); dir != "" {
		candidates = append(candidates, dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(installed, func(i, j int) bool { return majorOf(installed[i]) > majorOf(installed[j]) })
	candidates = append(candidates, installed...)

	for _, dir := range candidates {
		if !isExecutable(filepath.Join(dir, "initdb")) || !isExecutable(filepath.Join(dir, "postgres")) {
			continue
		}
		out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
		if err != nil {
			continue
		}
		m := versionOutput.FindSubmatch(out)
		if m == nil {
			return Binaries{}, fmt.Errorf("cannot read the version of %s from %q", dir, out)
		}
		v, _ := strconv.Atoi(string(m[1]))
		return Binaries{Dir: dir, Version: v}, nil
	}
	return Binaries{}, ErrNoBinaries
}

func majorOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
