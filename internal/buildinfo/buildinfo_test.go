package buildinfo

import (
	"runtime"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		info Info
		want string
	}{
		{Info{Version: "v1.2.3"}, "v1.2.3"},
		{Info{Version: "(devel)", Commit: "0123456789abcdef0123"}, "(devel) 0123456789ab"},
		{Info{Version: "(devel)", Commit: "0123456789abcdef0123", Modified: true}, "(devel) 0123456789ab+modified"},
		{Info{Version: "v0.1.0", Commit: "abc"}, "v0.1.0 abc"},
	}
	for _, tc := range tests {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.info, got, tc.want)
		}
	}
}

// TestRead reads the test binary's own information: the toolchain is
// the one running, and the link-time overrides win over the build's.
func TestRead(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() || i.Platform != runtime.GOOS+"/"+runtime.GOARCH || i.Version == "" {
		t.Fatalf("Read() = %+v", i)
	}
	version, commit = "v9.9.9", "feedface"
	defer func() { version, commit = "", "" }()
	if i := Read(); i.Version != "v9.9.9" || i.Commit != "feedface" {
		t.Errorf("with link-time values: %+v", i)
	}
}
