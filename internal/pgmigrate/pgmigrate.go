// Package pgmigrate applies a component's embedded SQL migrations to a
// PostgreSQL schema: versioned files applied once each, in order, each in
// its own transaction, under an advisory lock so that processes starting at
// once wait for each other instead of racing. When the schema is up to
// date it takes no lock and runs no DDL, so a process without the CREATE
// privilege can start against a migrated schema.
package pgmigrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one versioned file, with {{schema}} replaced.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Set is a component's migrations.
type Set struct {
	// Files holds the migrations in Dir, named "<version>_<what>.sql".
	// "{{schema}}" in them stands for the quoted schema name.
	Files fs.FS
	Dir   string
	// Table records applied versions, in the schema. Components sharing a
	// schema use different tables.
	Table string
}

// List returns the migrations in version order for schema.
func (s Set) List(schema string) ([]Migration, error) {
	quoted := pgx.Identifier{schema}.Sanitize()
	entries, err := fs.ReadDir(s.Files, s.Dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %q: name must start with a version number", e.Name())
		}
		body, err := fs.ReadFile(s.Files, path.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: strings.ReplaceAll(string(body), "{{schema}}", quoted)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}

// Apply applies to schema the migrations not applied yet.
func (s Set) Apply(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	quoted := pgx.Identifier{schema}.Sanitize()
	table := quoted + "." + pgx.Identifier{s.Table}.Sanitize()
	all, err := s.List(schema)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return nil
	}
	if current, err := applied(ctx, pool, table); err == nil && current >= all[len(all)-1].Version {
		return nil // up to date: no lock, no DDL, no CREATE privilege needed
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	key := LockKey("migrate:"+s.Table, schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// Unlock on a fresh context: ctx may be cancelled already.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	}()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoted); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+` (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	var done int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&done); err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	for _, m := range all {
		if m.Version <= done {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// applied returns the latest applied migration, 0 when none (or no
// migrations table).
func applied(ctx context.Context, pool *pgxpool.Pool, table string) (int, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&v)
	return v, err
}

// LockKey derives an advisory lock key from a purpose and a schema, so that
// components in different schemas never contend.
func LockKey(purpose, schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("composable:" + purpose + ":" + schema))
	return int64(h.Sum64())
}
