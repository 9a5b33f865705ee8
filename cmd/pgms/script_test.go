package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// TestScripts runs the CLI scenarios of testdata/script: each a txtar
// file of pgms commands, their expected output and the files they work
// on. A script gets three empty databases, named in $PGMS_DSN_A, _B and
// _C and listed in $PGMS_DSNS, and the command sql VAR QUERY, which runs
// QUERY on the database whose DSN is in $VAR and prints the first column
// of each row.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"sql": scriptSQL},
		Setup: func(env *testscript.Env) error {
			tb, ok := env.T().(testing.TB)
			if !ok {
				env.T().Fatal("testscript did not hand over a testing.TB")
			}
			dbs := pgtest.Databases(tb, 3)
			list := ""
			for i, name := range []string{"a", "b", "c"} {
				env.Setenv(config.DSNVariable(name), dbs[i].DSN)
				if i > 0 {
					list += ","
				}
				list += dbs[i].DSN
			}
			env.Setenv("PGMS_DSNS", list)
			return nil
		},
	})
}

// scriptSQL is the sql command of the scripts.
func scriptSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sql VAR QUERY")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ts.Getenv(args[0]))
	if err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, args[1], pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		for rows.Next() {
			fmt.Fprintln(ts.Stdout(), string(rows.RawValues()[0]))
		}
		err = rows.Err()
	}
	switch {
	case err != nil && !neg:
		ts.Fatalf("sql: %v", err)
	case err == nil && neg:
		ts.Fatalf("sql: succeeded, but a failure was expected")
	}
}
