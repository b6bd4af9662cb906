package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryBackendWorks(t *testing.T) {
	be := Memory()
	if _, err := be.Store.Append(context.Background(), "s", persistence.NoStream, persistence.EventData{ID: "e", Type: "t", Data: []byte{}}); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresUnreachableSaysWhatToDo: a server that does not answer gets
// an error naming the URL and the flag, still matching ErrUnreachable.
func TestPostgresUnreachableSaysWhatToDo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	url := "postgres://postgres@" + addr + "/test?sslmode=disable&connect_timeout=2"
	_, err = Postgres(ctx, url, "app_test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, postgres.ErrUnreachable) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "-postgres") {
		t.Fatalf("err = %v", err)
	}
}
