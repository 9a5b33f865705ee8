package asused

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// TestNativeCopyBinary: from PostgreSQL 16 on, the native copy's
// subscription copies the tables in binary when both servers run the same
// major and every column type is built in or an enum; an array of enums
// (its binary form names the enum's type id, which differs between the
// databases) keeps the copy in text. Before 16 binary never applies.
func TestNativeCopyBinary(t *testing.T) {
	servers := pgtest.StartServers(t, 2, pgtest.Options{})
	major := servers[0].Version
	for _, tc := range []struct {
		name, ddl string
		binary    bool
	}{
		{"built-in types", rowsDDL + "; CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE docs (id int PRIMARY KEY, m mood, body jsonb, tags text[])", major >= 16},
		{"array of enums", rowsDDL + "; CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE docs (id int PRIMARY KEY, moods mood[])", false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dbs := pgtest.DatabasesOn(t, servers)
			src, dst := pgtest.Connect(t, dbs[0].DSN), pgtest.Connect(t, dbs[1].DSN)
			install(t, src, dst)
			makeShard(t, src, 1, tc.ddl)
			var binary *bool
			ctx := fault.WithHook(context.Background(), func(point string) error {
				// pg_subscription has no subbinary before 14.
				if point == "move.backfill.end" && major >= 14 {
					return dst.QueryRow(context.Background(), "SELECT subbinary FROM pg_subscription WHERE subname = 'pgms_move_sh0001'").Scan(&binary)
				}
				return nil
			})
			ev := &events{}
			_, err := executor.Move(ctx, executor.MoveSpec{
				Shard: 1, Activate: true,
				From:    executor.Endpoint{Name: "a", DSN: dbs[0].DSN},
				To:      executor.Endpoint{Name: "b", DSN: dbs[1].DSN},
				Options: executor.MoveOptions{Strategy: "native", PollInterval: 50 * time.Millisecond},
			}, nil, ev)
			if err != nil {
				t.Fatalf("move: %v\n%s", err, ev.text())
			}
			if major < 14 {
				binary = new(bool)
			}
			if binary == nil || *binary != tc.binary {
				t.Errorf("PostgreSQL %d: subbinary = %v, want %v\n%s", major, binary, tc.binary, ev.text())
			}
			if said := strings.Contains(ev.text(), "copies the tables in binary"); said != tc.binary {
				t.Errorf("the move says it copies in binary: %v, want %v", said, tc.binary)
			}
			var n int
			if err := dst.QueryRow(context.Background(), "SELECT count(*) FROM sh0001.items").Scan(&n); err != nil || n != 500 {
				t.Errorf("destination has %d rows (%v)", n, err)
			}
		})
	}
}
