// Package redistest connects integration tests to the Redis server they run
// against, and gives each test a key prefix of its own so that tests — and
// test packages running in parallel — never see each other's keys.
//
// The server is read from COMPOSABLE_TEST_REDIS (a redis:// URL),
// defaulting to redis://127.0.0.1:6379/0. When it is unreachable the test
// fails with a message saying how to start it; only `go test -short` skips
// these tests.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvVar names the environment variable holding the server's URL.
const EnvVar = "COMPOSABLE_TEST_REDIS"

// DefaultURL is used when EnvVar is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL returns the URL tests use.
func URL() string {
	if u := os.Getenv(EnvVar); u != "" {
		return u
	}
	return DefaultURL
}

// Client returns a client of the test server, closed at cleanup. It skips
// the test under -short and fails it, with instructions, when the server is
// unreachable.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	return ClientOptions(t, nil)
}

// ClientOptions is Client with a hook to adjust the options (for example
// to point the client at a proxy) before connecting.
func ClientOptions(t testing.TB, adjust func(*redis.Options)) *redis.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Redis (skipped with -short)")
	}
	opts, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("redistest: bad %s: %v", EnvVar, err)
	}
	if adjust != nil {
		adjust(opts)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("redistest: Redis is not reachable at %s: %v\n"+
			"Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"+
			"or point %s at a server (bash .ci/run starts the local one).", opts.Addr, err, EnvVar)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix of this test's own ("test:<prefix>:<hex>"),
// whose keys are deleted at cleanup.
func Prefix(t testing.TB, c *redis.Client, prefix string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := "test:" + prefix + ":" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DeleteKeys(ctx, c, p+"*"); err != nil {
			t.Errorf("redistest: delete keys under %s: %v", p, err)
		}
	})
	return p
}

// DeleteKeys unlinks every key matching the glob pattern.
func DeleteKeys(ctx context.Context, c redis.Cmdable, pattern string) error {
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Unlink(ctx, batch...).Err()
	}
	return nil
}
