package main

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable/examples/internal/apptest"
)

// TestRunInMemory runs main's demo on the embedded defaults and checks its
// whole output, which is deterministic: each transfer is printed once its
// saga has ended, from the saga's state and the accounts' streams.
func TestRunInMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(testContext(t), &out, quiet(), config{}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want, err := os.ReadFile("testdata/demo.txt")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), out.String()); diff != "" {
		t.Errorf("output differs from testdata/demo.txt (-want +got):\n%s", diff)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr string
	}{
		{"memory by default", nil, config{schema: defaultSchema}, ""},
		{"postgres", []string{"-postgres", "postgres://db/x"}, config{postgresURL: "postgres://db/x", schema: defaultSchema}, ""},
		{"another schema", []string{"-postgres=postgres://db/x", "-schema=mine"}, config{postgresURL: "postgres://db/x", schema: "mine"}, ""},
		{"no arguments", []string{"extra"}, config{}, "unexpected arguments"},
		{"unknown flag", []string{"-store=disk"}, config{}, "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, io.Discard)
			apptest.CheckConfig(t, got, err, tt.want, tt.wantErr)
		})
	}
}
