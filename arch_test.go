package composable_test

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPureCoreImportsOnlyTheStandardLibrary keeps the root package free of
// runtimes and backends: reducers and effects must be usable, and testable,
// without actors, databases or brokers.
func TestPureCoreImportsOnlyTheStandardLibrary(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := build.ImportDir(wd, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") {
			t.Errorf("%s imports %s; the core may import only the standard library", filepath.Base(wd), imp)
		}
	}
}
