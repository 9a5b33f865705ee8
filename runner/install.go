package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
)

// InstallResult is what Install did on one node.
type InstallResult struct {
	// Node is the node's address.
	Node   string
	Result sql.Result
	// Err says, naming the node, why it has no library now.
	Err error
}

// Install installs or upgrades the library on every node: it connects to
// all of them at once, then installs on one after another. A node that
// fails does not stop the others.
func Install(ctx context.Context, dsns []string, opts sql.Options) []InstallResult {
	results := make([]InstallResult, len(dsns))
	nodes := make([]*pgutil.Node, len(dsns))
	var wg sync.WaitGroup
	for i, d := range dsns {
		results[i].Node = dsn.Name(d)
		wg.Go(func() { nodes[i], results[i].Err = pgutil.Connect(ctx, d) })
	}
	wg.Wait()
	for i, n := range nodes {
		if n == nil {
			continue
		}
		res, err := sql.Install(ctx, n.Conn, opts)
		n.Close()
		if err != nil {
			results[i].Err = fmt.Errorf("node %s: install: %s", n.Name, pgutil.Describe(err))
			continue
		}
		results[i].Node, results[i].Result = n.Name, res
	}
	return results
}
