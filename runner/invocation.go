package runner

import (
	"os"
	"runtime/debug"

	"github.com/pgms-dev/pgms/state"
)

// Invocation describes this process for the journal and for claims: the
// command, its arguments without passwords, the pgms version and the CI
// job it runs in, when the environment names one.
func Invocation(command, args string) state.Invocation {
	inv := state.ThisProcess(command, args)
	inv.Version = version()
	inv.CIRun = ciRun()
	return inv
}

// version is the module version pgms was built as ("(devel)" for a build
// from a checkout), with the commit when the build recorded one.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// ciRun names the CI job from the variables the common CI systems set.
func ciRun() string {
	if id := os.Getenv("GITHUB_RUN_ID"); id != "" {
		server, repo := os.Getenv("GITHUB_SERVER_URL"), os.Getenv("GITHUB_REPOSITORY")
		if server != "" && repo != "" {
			return server + "/" + repo + "/actions/runs/" + id
		}
		return "github run " + id
	}
	if u := os.Getenv("CI_JOB_URL"); u != "" {
		return u
	}
	if u := os.Getenv("BUILD_URL"); u != "" {
		return u
	}
	return ""
}
