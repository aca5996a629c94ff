package controlplane_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestControlPlaneImportsOnlyTheCore keeps the control plane a contract, not
// an implementation: controlplane and its subpackages import the standard
// library, package framework and each other, never a Kafka or Redis client
// or another adapter.
func TestControlPlaneImportsOnlyTheCore(t *testing.T) {
	const (
		self = "github.com/projector-dev/projector/controlplane"
		core = "github.com/projector-dev/projector/framework"
	)
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
			if strings.Contains(first, ".") && p != self && p != core && !strings.HasPrefix(p, self+"/") {
				t.Errorf("%s imports %s: the control plane may import only the standard library and framework", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
