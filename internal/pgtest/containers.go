//go:build testcontainers

package pgtest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The containers backend runs each server in a container of the official
// image (PGMS_TEST_PG_IMAGE, default postgres:17), for PostgreSQL versions
// the machine has no binaries of. The containers share the host's network,
// so that servers reach each other at the same 127.0.0.1:port the tests
// use (subscriptions and postgres_fdw connect server to server); that needs
// a Docker engine on Linux.
func init() { backends["testcontainers"] = startContainers }

const containerPassword = "pgms-test"

func startContainers(ctx context.Context, n int, opts Options) (*Cluster, error) {
	image := os.Getenv("PGMS_TEST_PG_IMAGE")
	if image == "" {
		image = "postgres:17"
	}
	c := &Cluster{}
	var ctrs []*tcpostgres.PostgresContainer
	c.cleanup = func() {
		for _, ctr := range ctrs {
			testcontainers.TerminateContainer(ctr)
		}
	}
	for i := range n {
		port, err := freePort()
		if err != nil {
			c.Close()
			return nil, err
		}
		settings := map[string]string{}
		for k, v := range DefaultSettings {
			settings[k] = v
		}
		for k, v := range opts.Settings {
			settings[k] = v
		}
		settings["port"] = strconv.Itoa(port)
		settings["listen_addresses"] = "127.0.0.1"
		delete(settings, "unix_socket_directories")
		keys := make([]string, 0, len(settings))
		for k := range settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		args := []string{"postgres"}
		for _, k := range keys {
			args = append(args, "-c", k+"="+settings[k])
		}
		ctr, err := tcpostgres.Run(ctx, image,
			tcpostgres.WithUsername(Superuser),
			tcpostgres.WithPassword(containerPassword),
			tcpostgres.WithDatabase("postgres"),
			testcontainers.WithCmd(args...),
			testcontainers.WithExposedPorts(),
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) { hc.NetworkMode = "host" }),
			testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").
				WithOccurrence(2).WithStartupTimeout(2*time.Minute)),
		)
		if ctr != nil {
			ctrs = append(ctrs, ctr)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start container %d (%s): %w", i, image, err)
		}
		dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/postgres?sslmode=disable", Superuser, containerPassword, port)
		servers, err := external(ctx, 1, []string{dsn})
		if err != nil {
			c.Close()
			return nil, err
		}
		servers.Servers[0].Name = fmt.Sprintf("s%d", i)
		c.Servers = append(c.Servers, servers.Servers[0])
	}
	return c, nil
}
