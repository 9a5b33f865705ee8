package runner

import (
	"os"

	"github.com/pgms-dev/pgms/internal/buildinfo"
	"github.com/pgms-dev/pgms/state"
)

// Invocation describes this process for the journal and for claims: the
// command, its arguments without passwords, the pgms version and the CI
// job it runs in, when the environment names one.
func Invocation(command, args string) state.Invocation {
	inv := state.ThisProcess(command, args)
	inv.Version = buildinfo.Read().String()
	inv.CIRun = CIRun(os.Getenv)
	return inv
}

// CIRun names the CI job from the variables the common CI systems set: a
// link to the job where the system gives one, so that pgms status leads
// from a run to its log. getenv is os.Getenv outside tests.
func CIRun(getenv func(string) string) string {
	if id := getenv("GITHUB_RUN_ID"); id != "" {
		server, repo := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY")
		if server != "" && repo != "" {
			u := server + "/" + repo + "/actions/runs/" + id
			// A re-run keeps the run id; the attempt tells them apart.
			if a := getenv("GITHUB_RUN_ATTEMPT"); a != "" && a != "1" {
				u += "/attempts/" + a
			}
			return u
		}
		return "github run " + id
	}
	// GitLab CI, Jenkins, Buildkite, CircleCI.
	for _, name := range []string{"CI_JOB_URL", "BUILD_URL", "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL"} {
		if u := getenv(name); u != "" {
			return u
		}
	}
	return ""
}
