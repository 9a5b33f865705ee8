package main

import (
	"io"
	"strings"
	"testing"
)

// TestHelp checks that every command has its long help and every help
// file belongs to a command.
func TestHelp(t *testing.T) {
	root := newRootCommand(strings.NewReader(""), io.Discard, io.Discard)
	used := map[string]bool{"pgms.txt": true}
	for _, c := range root.Commands() {
		if c.Long == "" || strings.HasSuffix(c.Long, "\n") {
			t.Errorf("%s: long help %q", c.Name(), c.Long)
		}
		used[c.Name()+".txt"] = true
	}
	files, err := helpTexts.ReadDir("help")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[f.Name()] {
			t.Errorf("help/%s belongs to no command", f.Name())
		}
	}
}
