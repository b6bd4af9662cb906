package postgres

import (
	"embed"

	"github.com/composable-go/composable/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations are the event store's schema migrations.
var migrations = pgmigrate.Set{Files: migrationFiles, Dir: "migrations", Table: "schema_migrations"}

// lockKey derives an advisory lock key from a purpose and the schema, so
// stores in different schemas never contend.
func lockKey(purpose, schema string) int64 { return pgmigrate.LockKey(purpose, schema) }
