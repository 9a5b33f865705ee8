package main

import (
	"fmt"

	"github.com/pgms-dev/pgms/internal/units"
)

// verifyFlagHelp describes --verify of move and apply.
const verifyFlagHelp = "verification gate of the fast copy, before streaming starts: off, count (row counts per chunk) or full (row counts and content hashes per chunk, computed on both servers); a difference stops the move before the switch, keeping the copy for inspection"

// keepCopyHelp describes --keep-copy of move and apply.
const keepCopyHelp = "an interrupted or killed fast copy that wrote at least this much is kept and continued by the next run, which compares it with a fresh snapshot and copies again only what differs (default 64MB; 0: never)"

// sizeFlag reads a size flag of the fast copy: empty for the default (0),
// "0" for never (-1), else a size.
func sizeFlag(name, v string) (int64, error) {
	switch v {
	case "":
		return 0, nil
	case "0":
		return -1, nil
	}
	n, err := units.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", name, v, err)
	}
	if n <= 0 {
		return -1, nil
	}
	return n, nil
}
