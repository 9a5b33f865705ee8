package state

import (
	"os"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// Three servers: discovery and triage look at a whole cluster.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 3)) }
