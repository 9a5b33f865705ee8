// Package pgbin locates PostgreSQL client programs (pg_dump) on the machine
// running pgms and checks that their version suits a server.
//
// pg_dump can dump servers of its own major version and older ones, never
// newer ones; so the search takes the first installation, in order of
// preference, whose major version is at least the server's.
package pgbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// EnvDir names a directory searched before everything else.
const EnvDir = "PGMS_PG_BIN"

// Program is a located client program.
type Program struct {
	Path    string
	Version string // full version, e.g. "15.18"
	Major   int
}

var versionOutput = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// ErrNotFound says no usable program was found; the message lists what was
// looked at.
var ErrNotFound = errors.New("not found")

// candidates lists where a program may be, in order of preference:
// $PGMS_PG_BIN, PATH, then /usr/lib/postgresql/*/bin newest first.
func candidates(program string) []string {
	var out []string
	if dir := os.Getenv(EnvDir); dir != "" {
		out = append(out, filepath.Join(dir, program))
	}
	if p, err := exec.LookPath(program); err == nil {
		out = append(out, p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return dirMajor(dirs[i]) > dirMajor(dirs[j]) })
	for _, d := range dirs {
		out = append(out, filepath.Join(d, program))
	}
	return out
}

func dirMajor(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

var (
	versionsMu sync.Mutex
	versions   = map[string]Program{}
)

// probe runs "program --version" once per path.
func probe(path string) (Program, error) {
	versionsMu.Lock()
	defer versionsMu.Unlock()
	if p, ok := versions[path]; ok {
		return p, nil
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return Program{}, err
	}
	m := versionOutput.FindSubmatch(out)
	if m == nil {
		return Program{}, fmt.Errorf("unrecognised version output %q", strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(string(m[1]))
	v := string(m[1])
	if len(m[2]) > 0 {
		v += "." + string(m[2])
	}
	p := Program{Path: path, Version: v, Major: major}
	versions[path] = p
	return p, nil
}

// Probe runs "path --version" (once per path) and returns what it says.
func Probe(path string) (Program, error) { return probe(path) }

// Find returns the first program named program whose major version is at
// least minMajor (0: any). The error lists the versions that were found.
func Find(program string, minMajor int) (Program, error) {
	var seen []string
	for _, path := range candidates(program) {
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		p, err := probe(path)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s (%v)", path, err))
			continue
		}
		if p.Major >= minMajor {
			return p, nil
		}
		seen = append(seen, fmt.Sprintf("%s (version %s)", path, p.Version))
	}
	where := "on PATH, in $" + EnvDir + " or under /usr/lib/postgresql/*/bin"
	if len(seen) == 0 {
		return Program{}, fmt.Errorf("%s %w %s; install the PostgreSQL client programs (e.g. apt-get install postgresql-client-%d) or set %s",
			program, ErrNotFound, where, max(minMajor, 15), EnvDir)
	}
	return Program{}, fmt.Errorf("no %s of version %d or newer %s (found %s); install postgresql-client-%d or set %s",
		program, minMajor, where, strings.Join(seen, ", "), minMajor, EnvDir)
}

// PgDump finds a pg_dump able to dump a server of major version serverMajor.
func PgDump(serverMajor int) (Program, error) { return Find("pg_dump", serverMajor) }
