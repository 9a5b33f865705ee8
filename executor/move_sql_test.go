package executor

import (
	"strings"
	"testing"
)

func TestSplitSQLUnterminated(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"SELECT 1; SELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT 'open;", []string{"SELECT 'open;"}},
		{"-- only a comment\n", nil},
		{"SELECT $1; SELECT a$b", []string{"SELECT $1", "SELECT a$b"}},
		{`SELECT "x;"";"; ;;`, []string{`SELECT "x;"";"`}},
	} {
		var got []string
		for _, s := range splitSQL(tc.in) {
			got = append(got, s.sql)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
