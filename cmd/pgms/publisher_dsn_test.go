package main

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/netfault"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// TestPublisherDSN moves a shard off a node that pgms reaches on one
// address (its dsn) and the other servers on another (its publisher_dsn,
// here a proxy in front of the same server): the subscription connects
// through the publisher address, pgms does not, and the rows arrive. The
// move opens a rollback window, whose stream back reaches the destination
// through its own publisher_dsn; the rollback brings the writes made
// there home.
func TestPublisherDSN(t *testing.T) {
	dbs := freshCluster(t)
	var proxies []*netfault.Proxy
	for i, name := range []string{"A", "B"} {
		proxy, err := netfault.Start(dbs[i].Server.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		u, err := url.Parse(dbs[i].DSN)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(proxy.Port()))
		t.Setenv("PGMS_DSN_"+name+"_PUBLISHER", u.String())
		proxies = append(proxies, proxy)
	}

	dir := t.TempDir()
	topology := func(shards string) string {
		return `cluster { rollback_window = "1h" }
node "a" {
  dsn           = env("PGMS_DSN_A")
  publisher_dsn = env("PGMS_DSN_A_PUBLISHER")
}
node "b" {
  dsn           = env("PGMS_DSN_B")
  publisher_dsn = env("PGMS_DSN_B_PUBLISHER")
}
` + shards
	}
	writeTopology(t, dir, "topology.pgms.hcl", topology(`shards "0-1" { node = "a" }`+"\n"))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	pgtest.Exec(t, pgtest.Connect(t, dbs[0].DSN), `CREATE TABLE sh0001.t (id int PRIMARY KEY); INSERT INTO sh0001.t SELECT generate_series(1, 500)`)
	for i, p := range proxies {
		if n := p.Stats().Accepted; n != 0 {
			t.Fatalf("%d connections through node %d's publisher address before any move", n, i)
		}
	}

	writeTopology(t, dir, "topology.pgms.hcl", topology(`shards "0" { node = "a" }
shards "1" { node = "b" }
`))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	for i, p := range proxies {
		if n := p.Stats().Accepted; n == 0 {
			t.Errorf("no connection through node %d's publisher_dsn (a: the subscription; b: the rollback window's stream back)", i)
		}
	}
	if got := count1(t, dbs[1].DSN, "SELECT count(*) FROM sh0001.t"); got != "500" {
		t.Errorf("%s rows on b", got)
	}
	pgtest.Exec(t, pgtest.Connect(t, dbs[1].DSN), `INSERT INTO sh0001.t SELECT generate_series(501, 600)`)
	// The stream back is the window's, not a leftover: cleanup keeps it.
	if r := pgms(t, "", "cleanup", "--config", dir, "--auto-approve").must(t); !strings.Contains(r.stdout, "Nothing to clean up") {
		t.Errorf("cleanup during the window:\n%s", r.stdout)
	}
	pgms(t, "", "rollback", "--config", dir, "--shard=1").must(t)
	if got := count1(t, dbs[0].DSN, "SELECT count(*) FROM sh0001.t"); got != "600" {
		t.Errorf("%s rows on a after the rollback", got)
	}
}
