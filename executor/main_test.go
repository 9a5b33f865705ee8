package executor

import (
	"os"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// The executor's tests share two servers: a move's source and destination.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 2)) }
