package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/testkit/pgtest"
	"github.com/composable-go/composable/testkit/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDemo runs the demo on the test servers, in a schema and key prefix
// of its own, and checks what it reports.
func TestDemo(t *testing.T) {
	pool := pgtest.Pool(t)     // fails with instructions when PostgreSQL is down
	rdb := redistest.Client(t) // likewise for Redis
	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg := config{postgresURL: pgtest.URL(), redisURL: redistest.URL(), schema: "op_" + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := reset(ctx, pool, rdb, cfg); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, slog.New(slog.DiscardHandler), cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"order_history and order_stats have applied position 9; lag 0",
		"recent orders of ada from PostgreSQL (a miss: now cached): 1005 placed, 1004 placed, 1003 cancelled",
		"recent orders of ada from the Redis cache: 1005 placed, 1004 placed, 1003 cancelled",
		"recent orders of ada from PostgreSQL (a miss: now cached): 1005 cancelled, 1004 placed, 1003 cancelled",
		"recent orders of ada from the Redis cache: 1005 cancelled, 1004 placed, 1003 cancelled",
		"order_history dead letter: position 11, order.placed",
		"order_stats dead letter: position 11, order.placed",
		"cancelled  2", "placed     2", "shipped    2",
		"switched over: the rebuilt history is identical (4 orders of ada)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the demo did not report %q", want)
		}
	}
	// The history, line by line.
	for _, row := range [][]string{{"1005", "placed", "3"}, {"1004", "placed", "3"}, {"1003", "cancelled", "1", "found a cheaper one"}, {"1001", "shipped", "7", "DHL"}} {
		if !containsFields(got, row) {
			t.Errorf("the history lacks %v", row)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
}

// containsFields reports whether a line of s has exactly fields.
func containsFields(s string, fields []string) bool {
	for line := range strings.Lines(s) {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestFlags(t *testing.T) {
	env := func(string) string { return "" }
	cfg, err := parseConfig(nil, env, io.Discard)
	if err != nil || cfg.postgresURL != defaultPostgresURL || cfg.redisURL != defaultRedisURL || cfg.schema != "order_projection" {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, args := range [][]string{{"-schema="}, {"-schema=a_schema_name_too_long"}, {"extra"}} {
		if _, err := parseConfig(args, env, io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted", args)
		}
	}
	if _, err := parseConfig([]string{"-h"}, env, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
