package framework_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/projector-dev/projector/framework"
)

func TestValidateProjectionName(t *testing.T) {
	for _, ok := range []string{"billing", "billing.v2", "mabis-bka_2026"} {
		if err := framework.ValidateProjectionName(ok); err != nil {
			t.Errorf("ValidateProjectionName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a{b}", "a:b", "a b", "a/b", "a*", strings.Repeat("x", 129)} {
		if err := framework.ValidateProjectionName(bad); !errors.Is(err, framework.ErrInvalidProjectionName) {
			t.Errorf("ValidateProjectionName(%q) = %v, want ErrInvalidProjectionName", bad, err)
		}
	}
}

func TestVersionedNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		name string
		v    uint64
		ok   bool
	}{
		{"billing", "billing", 0, true},
		{"billing@v3", "billing", 3, true},
		{"billing@v0", "billing@v0", 0, false},
		{"billing@v03", "billing@v03", 0, false},
		{"billing@v", "billing@v", 0, false},
		{"@v3", "", 3, false},
		{"a@vb@v2", "a@vb", 2, false},
		{"bill ing@v2", "bill ing", 2, false},
	} {
		name, v := framework.SplitVersionedName(c.in)
		if name != c.name || v != c.v {
			t.Errorf("SplitVersionedName(%q) = %q, %d; want %q, %d", c.in, name, v, c.name, c.v)
		}
		if err := framework.ValidateProjectionName(c.in); (err == nil) != c.ok {
			t.Errorf("ValidateProjectionName(%q) = %v; want ok %v", c.in, err, c.ok)
		}
	}
	if got := framework.VersionedName("billing", 0); got != "billing" {
		t.Errorf("VersionedName(billing, 0) = %q", got)
	}
	if got := framework.VersionedName("billing", 12); got != "billing@v12" {
		t.Errorf("VersionedName(billing, 12) = %q", got)
	}
	if got := framework.VersionGroup("billing", 12); got != "billing@v12" {
		t.Errorf("VersionGroup = %q", got)
	}
}
