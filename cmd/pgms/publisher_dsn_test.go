package main

import (
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/pgms-dev/pgms/internal/netfault"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// TestPublisherDSN moves a shard off a node that pgms reaches on one
// address (its dsn) and the destination's server on another (its
// publisher_dsn, here a proxy in front of the same server): the
// subscription connects through the publisher address, pgms does not,
// and the rows arrive.
func TestPublisherDSN(t *testing.T) {
	dbs := freshCluster(t)
	proxy, err := netfault.Start(dbs[0].Server.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u, err := url.Parse(dbs[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(proxy.Port()))
	t.Setenv("PGMS_DSN_A_PUBLISHER", u.String())

	dir := t.TempDir()
	topology := func(shards string) string {
		return `node "a" {
  dsn             = env("PGMS_DSN_A")
  publisher_dsn   = env("PGMS_DSN_A_PUBLISHER")
}
node "b" { dsn = env("PGMS_DSN_B") }
` + shards
	}
	writeTopology(t, dir, "topology.pgms.hcl", topology(`shards "0-1" { node = "a" }`+"\n"))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	pgtest.Exec(t, pgtest.Connect(t, dbs[0].DSN), `CREATE TABLE sh0001.t (id int PRIMARY KEY); INSERT INTO sh0001.t SELECT generate_series(1, 500)`)
	if n := proxy.Stats().Accepted; n != 0 {
		t.Fatalf("%d connections through the publisher address before any move", n)
	}

	writeTopology(t, dir, "topology.pgms.hcl", topology(`shards "0" { node = "a" }
shards "1" { node = "b" }
`))
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	if n := proxy.Stats().Accepted; n == 0 {
		t.Error("the subscription did not connect through publisher_dsn")
	}
	if got := count1(t, dbs[1].DSN, "SELECT count(*) FROM sh0001.t"); got != "500" {
		t.Errorf("%s rows on b", got)
	}
}
