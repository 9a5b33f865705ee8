package runner

import "testing"

func TestCIRun(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none", nil, ""},
		{"github", map[string]string{"GITHUB_RUN_ID": "42", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/db"},
			"https://github.com/acme/db/actions/runs/42"},
		{"github re-run", map[string]string{"GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "3", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/db"},
			"https://github.com/acme/db/actions/runs/42/attempts/3"},
		{"github without server", map[string]string{"GITHUB_RUN_ID": "42"}, "github run 42"},
		{"gitlab", map[string]string{"CI_JOB_URL": "https://gitlab.example/acme/db/-/jobs/7"}, "https://gitlab.example/acme/db/-/jobs/7"},
		{"jenkins", map[string]string{"BUILD_URL": "https://ci.example/job/db/9/"}, "https://ci.example/job/db/9/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CIRun(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("CIRun = %q, want %q", got, tc.want)
			}
		})
	}
}
