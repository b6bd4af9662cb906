// Package apptest holds assertions the example commands' tests share.
package apptest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// CheckConfig is the assertion of a command's flag-parsing test: with
// wantErr set, err must mention it; otherwise err must be nil and got equal
// want, unexported fields included.
func CheckConfig[C any](t *testing.T, got C, err error, want C, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one mentioning %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var zero C
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(zero)); diff != "" {
		t.Errorf("config differs (-want +got):\n%s", diff)
	}
}
