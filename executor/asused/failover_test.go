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

// TestFailoverSlots: on a source of PostgreSQL 17 or later with a standby
// (here its physical slot), the preflight says that the move's slot is not
// a failover slot and what a failover during the copy means; the slot is
// made with failover = false, so that synchronized_standby_slots, naming a
// standby that does not even run, does not hold the move's stream back.
// Before 17 there are no failover slots and nothing is said.
func TestFailoverSlots(t *testing.T) {
	servers := pgtest.StartServers(t, 2, pgtest.Options{})
	major := servers[0].Version
	dbs := pgtest.DatabasesOn(t, servers)
	src, dst := pgtest.Connect(t, dbs[0].DSN), pgtest.Connect(t, dbs[1].DSN)
	install(t, src, dst)
	makeShard(t, src, 1, rowsDDL)
	admin := pgtest.Connect(t, servers[0].DSN("postgres"))
	pgtest.Exec(t, admin, "SELECT pg_create_physical_replication_slot('standby1')")
	if major >= 17 {
		pgtest.Exec(t, admin, "ALTER SYSTEM SET synchronized_standby_slots = 'standby1'")
		pgtest.Exec(t, admin, "SELECT pg_reload_conf()")
	}
	var failover *bool
	ctx := fault.WithHook(context.Background(), func(point string) error {
		if point == "move.cutover.begin" && major >= 17 {
			return src.QueryRow(context.Background(), "SELECT failover FROM pg_replication_slots WHERE slot_name = 'pgms_move_sh0001'").Scan(&failover)
		}
		return nil
	})
	ev := &events{}
	_, err := executor.Move(ctx, executor.MoveSpec{
		Shard: 1, Activate: true,
		From:    executor.Endpoint{Name: "a", DSN: dbs[0].DSN},
		To:      executor.Endpoint{Name: "b", DSN: dbs[1].DSN},
		Options: executor.MoveOptions{PollInterval: 50 * time.Millisecond},
	}, nil, ev)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	said := strings.Contains(ev.text(), "is not a failover slot")
	switch {
	case major < 17 && said:
		t.Errorf("PostgreSQL %d has no failover slots, yet:\n%s", major, ev.text())
	case major < 17:
	case !said || !strings.Contains(ev.text(), `synchronized_standby_slots ("standby1") holds back failover slots only`):
		t.Errorf("the preflight says nothing of failover slots:\n%s", ev.text())
	case failover == nil || *failover:
		t.Errorf("the move's slot: failover = %v, want false", failover)
	}
}
