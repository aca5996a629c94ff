package framework_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFrameworkImportsOnlyTheStandardLibrary keeps the core lean: framework
// and its subpackages import the standard library and each other, never a
// Kafka, Redis or OpenTelemetry package.
func TestFrameworkImportsOnlyTheStandardLibrary(t *testing.T) {
	const self = "github.com/projector-dev/projector/framework"
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") && p != self && !strings.HasPrefix(p, self+"/") {
				t.Errorf("%s imports %s: framework may import only the standard library", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
