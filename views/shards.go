package views

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/words"
)

// ShardChange is what allocate, activate and deactivate show: what they
// did to a range of shards on one node.
type ShardChange struct {
	Header
	// Command is allocate, activate or deactivate.
	Command string `json:"command"`
	Node    string `json:"node"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	// Created are the schemas allocate created; Migrated says its migrate
	// command ran and succeeded, in MigrateMS; MigrateFailed that it
	// failed, leaving the new shards inactive.
	Created       []string `json:"created,omitempty"`
	Migrated      bool     `json:"migrated,omitempty"`
	MigrateMS     float64  `json:"migrate_ms,omitempty"`
	MigrateFailed bool     `json:"migrate_failed,omitempty"`
	// Activate says allocate was asked to activate.
	Activate bool `json:"activate,omitempty"`
	// Activated and Deactivated are the schemas whose state changed.
	Activated   []string `json:"activated,omitempty"`
	Deactivated []string `json:"deactivated,omitempty"`
}

// NewAllocate builds the report of an allocation; migrateFailed says the
// migrate command failed.
func NewAllocate(node string, from, to int, activate bool, res executor.AllocateResult, migrateFailed bool) *ShardChange {
	return &ShardChange{Command: "allocate", Node: node, From: from, To: to, Created: res.Created, Migrated: res.Migrated,
		MigrateMS: ms(res.MigrateIn), MigrateFailed: migrateFailed, Activate: activate, Activated: res.Activated}
}

// NewActivation builds the report of activate (activate true) or
// deactivate, with the schemas whose state changed.
func NewActivation(activate bool, node string, from, to int, changed []string) *ShardChange {
	if activate {
		return &ShardChange{Command: "activate", Node: node, From: from, To: to, Activated: changed}
	}
	return &ShardChange{Command: "deactivate", Node: node, From: from, To: to, Deactivated: changed}
}

func (c *ShardChange) text(w io.Writer) error {
	var b strings.Builder
	shards := func(one, many string) string {
		return words.ShardRange(c.From, c.To) + " " + words.Plural(c.To-c.From+1, one, many)
	}
	switch c.Command {
	case "activate":
		if len(c.Activated) == 0 {
			fmt.Fprintf(&b, "%s: %s active already\n", c.Node, shards("was", "were"))
		} else {
			fmt.Fprintf(&b, "%s: activated %s\n", c.Node, schemaList(c.Activated))
		}
	case "deactivate":
		if len(c.Deactivated) == 0 {
			fmt.Fprintf(&b, "%s: %s not active\n", c.Node, shards("was", "were"))
		} else {
			fmt.Fprintf(&b, "%s: deactivated %s\n", c.Node, schemaList(c.Deactivated))
		}
	default:
		if len(c.Created) > 0 {
			fmt.Fprintf(&b, "%s: created %s\n", c.Node, schemaList(c.Created))
		} else {
			fmt.Fprintf(&b, "%s: %s already\n", c.Node, shards("exists", "exist"))
		}
		if c.MigrateFailed {
			break
		}
		if c.Migrated {
			fmt.Fprintf(&b, "%s: migrate command succeeded in %s\n", c.Node, fromMS(c.MigrateMS).Round(time.Millisecond))
		} else {
			fmt.Fprintf(&b, "%s: no --migrate-cmd (or MIGRATE_CMD) given: no migration ran\n", c.Node)
		}
		switch {
		case !c.Activate:
			fmt.Fprintf(&b, "%s: not activated (--activate=no); new shards stay inactive\n", c.Node)
		case len(c.Activated) > 0:
			fmt.Fprintf(&b, "%s: activated %s\n", c.Node, schemaList(c.Activated))
		default:
			fmt.Fprintf(&b, "%s: %s active already\n", c.Node, shards("was", "were"))
		}
	}
	return flush(w, &b)
}

// schemaList names a few schemas, or counts many and names the first and
// last.
func schemaList(schemas []string) string {
	if len(schemas) > 4 {
		return fmt.Sprintf("%d shards (%s … %s)", len(schemas), schemas[0], schemas[len(schemas)-1])
	}
	return strings.Join(schemas, ", ")
}
