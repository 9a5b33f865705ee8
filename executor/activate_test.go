package executor

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/state"
)

func TestActivateDeactivate(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	a, b := installed(t, dbs[0]), installed(t, dbs[1])
	pgtest.Exec(t, a.Conn, "SELECT microsharding.microsharding_ensure_exist(1, 4); SELECT microsharding.microsharding_ensure_active(4)")
	pgtest.Exec(t, b.Conn, "SELECT microsharding.microsharding_ensure_exist(4)")
	ctx := context.Background()

	steps := []struct {
		name     string
		run      func() ([]string, error)
		want     []string
		active   []string
		errMatch string
	}{
		{"activate 1-3", func() ([]string, error) { return Activate(ctx, a, 1, 3, ActivateOptions{}) },
			[]string{"sh0001", "sh0002", "sh0003"}, []string{"sh0001", "sh0002", "sh0003", "sh0004"}, ""},
		{"again", func() ([]string, error) { return Activate(ctx, a, 1, 3, ActivateOptions{}) },
			nil, []string{"sh0001", "sh0002", "sh0003", "sh0004"}, ""},
		{"deactivate 2-5", func() ([]string, error) { return Deactivate(ctx, a, 2, 5, ActivateOptions{}) },
			[]string{"sh0002", "sh0003", "sh0004"}, []string{"sh0001"}, ""},
		{"deactivate again", func() ([]string, error) { return Deactivate(ctx, a, 2, 5, ActivateOptions{}) },
			nil, []string{"sh0001"}, ""},
		{"missing schema", func() ([]string, error) { return Activate(ctx, a, 4, 5, ActivateOptions{}) },
			nil, []string{"sh0001"}, "activate shards 4-5 on node " + a.Name + ": ERROR: No such schema: sh0005 (SQLSTATE 3F000); hint: Create the shards first"},
		{"reversed", func() ([]string, error) { return Deactivate(ctx, a, 3, 2, ActivateOptions{}) },
			nil, []string{"sh0001"}, "deactivate shards 3-2 on node " + a.Name + ": invalid shard range 3-2"},
	}
	for _, s := range steps {
		got, err := s.run()
		switch {
		case s.errMatch != "":
			if err == nil || !strings.Contains(err.Error(), s.errMatch) {
				t.Errorf("%s: error %v, want %q", s.name, err, s.errMatch)
			}
		case err != nil:
			t.Errorf("%s: %v", s.name, err)
		case !reflect.DeepEqual(got, s.want):
			t.Errorf("%s: returned %#v, want %#v", s.name, got, s.want)
		}
		if active := activeShards(t, a.Conn); !reflect.DeepEqual(active, s.active) {
			t.Errorf("%s: active %v, want %v", s.name, active, s.active)
		}
	}

	// The invariant: shard 1 is active on a, so b may not activate it; b's
	// own entry in the cluster does not count against it.
	pgtest.Exec(t, b.Conn, "SELECT microsharding.microsharding_ensure_exist(1); SELECT microsharding.microsharding_ensure_active(4)")
	live := &state.Fleet{Nodes: []state.NodeSpec{{Name: a.Name, DSN: dbs[0].DSN}, {Name: b.Name, DSN: dbs[1].DSN}}}
	_, err := Activate(ctx, b, 1, 1, ActivateOptions{Fleet: live})
	if err == nil || !strings.Contains(err.Error(), "activate shard 1 on node "+b.Name+": refusing to activate: sh0001 is active on node "+a.Name) {
		t.Errorf("double activation: %v", err)
	}
	if got, err := Activate(ctx, b, 4, 4, ActivateOptions{Fleet: live}); err != nil || got != nil {
		t.Errorf("re-activating b's own shard: %v, %v", got, err)
	}
	if got, err := Activate(ctx, a, 1, 2, ActivateOptions{Fleet: live}); err != nil || !reflect.DeepEqual(got, []string{"sh0002"}) {
		t.Errorf("activating on a: %v, %v", got, err)
	}
	if active := activeShards(t, b.Conn); !reflect.DeepEqual(active, []string{"sh0004"}) {
		t.Errorf("b active %v", active)
	}

	bare := openNode(t, pgtest.Databases(t, 1)[0].DSN)
	if _, err := Deactivate(ctx, bare, 1, 1, ActivateOptions{}); err == nil || !strings.Contains(err.Error(), "run pgms install") {
		t.Errorf("without the library: %v", err)
	}
}
