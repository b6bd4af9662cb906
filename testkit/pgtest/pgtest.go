// Package pgtest connects integration tests to the PostgreSQL server they
// run against, and gives each test its own schema so that tests — and test
// packages running in parallel — never see each other's rows.
//
// The server is read from COMPOSABLE_TEST_POSTGRES (a pgx connection
// string), defaulting to postgres://postgres@127.0.0.1:5432/test. When it is
// unreachable the test fails with a message saying how to start it; only
// `go test -short` skips these tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/testkit"
)

// EnvVar names the environment variable holding the connection string.
const EnvVar = "COMPOSABLE_TEST_POSTGRES"

// DefaultURL is used when EnvVar is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the connection string tests use.
func URL() string {
	if u := os.Getenv(EnvVar); u != "" {
		return u
	}
	return DefaultURL
}

// Pool returns a pool connected to the test server, closed at cleanup. It
// skips the test under -short and fails it, with instructions, when the
// server is unreachable.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PoolConfig(t, nil)
}

// PoolConfig is Pool with a hook to adjust the pool configuration (for
// example to point it at a proxy) before connecting.
func PoolConfig(t testing.TB, adjust func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL (skipped with -short)")
	}
	cfg, err := pgxpool.ParseConfig(URL())
	if err != nil {
		t.Fatalf("pgtest: bad %s: %v", EnvVar, err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		t.Fatalf("pgtest: PostgreSQL is not reachable at %s: %v\n"+
			"Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"or point %s at a server (bash .ci/run starts the local one).", cfg.ConnString(), err, EnvVar)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Schema returns the name of a new, empty schema for this test, dropped with
// everything in it at cleanup. prefix makes it recognisable.
func Schema(t testing.TB, pool *pgxpool.Pool, prefix string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return name
}

// DropSchemas drops every schema whose name starts with prefix, with
// everything in it; failures fail t. Use it at cleanup for schemas a
// component under test created next to the test's own (a projection
// store's model schemas, say).
func DropSchemas(t testing.TB, pool *pgxpool.Pool, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, prefix)
	if err != nil {
		t.Errorf("pgtest: list schemas %s*: %v", prefix, err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("pgtest: list schemas %s*: %v", prefix, err)
		return
	}
	for _, n := range names {
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", n, err)
		}
	}
}

// ProxiedPool is PoolConfig for a pool whose connections go through a
// loopback proxy to the test server, which the test can cut (CutAll) or
// take down (SetDown) without touching the shared server.
func ProxiedPool(t testing.TB, adjust func(*pgxpool.Config)) (*pgxpool.Pool, *testkit.TCPProxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL())
	if err != nil {
		t.Fatalf("pgtest: bad %s: %v", EnvVar, err)
	}
	proxy := testkit.NewTCPProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	pool := PoolConfig(t, func(c *pgxpool.Config) {
		host, port, err := net.SplitHostPort(proxy.Addr())
		if err != nil {
			t.Fatalf("pgtest: proxy address %s: %v", proxy.Addr(), err)
		}
		p, _ := strconv.ParseUint(port, 10, 16)
		c.ConnConfig.Host, c.ConnConfig.Port = host, uint16(p)
		if adjust != nil {
			adjust(c)
		}
	})
	return pool, proxy
}
