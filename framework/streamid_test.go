package framework_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/projector-dev/projector/framework"
)

func TestValidateStreamID(t *testing.T) {
	tests := []struct {
		id     string
		reason string // "" means valid
	}{
		{"process/acme/123", ""},
		{"process/acme/Zählpunkt 1", ""},
		{"a", ""},
		{"", "empty"},
		{strings.Repeat("x", framework.MaxStreamIDLength+1), "longer"},
		{"process/acme/\x00", "control character"},
		{"process/acme/\n", "control character"},
		{"process/acme/\u0085", "control character"},
		{"process/\xff", "UTF-8"},
		{"process//x", "empty segment"},
		{"/process/x", "empty segment"},
		{"process/x/", "empty segment"},
	}
	for _, tt := range tests {
		err := framework.ValidateStreamID(tt.id)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("ValidateStreamID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		if !errors.Is(err, framework.ErrInvalidStreamID) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ValidateStreamID(%q) = %v, want ErrInvalidStreamID mentioning %q", tt.id, err, tt.reason)
		}
		if e, ok := errors.AsType[*framework.InvalidStreamIDError](err); !ok || e.ID != tt.id {
			t.Errorf("ValidateStreamID(%q): error %#v does not carry the ID", tt.id, err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"process/", "process/acme/", "process/ac", "partner"} {
		if err := framework.ValidatePrefix(ok); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "process//", "process/\t"} {
		err := framework.ValidatePrefix(bad)
		e, ok := errors.AsType[*framework.InvalidStreamIDError](err)
		if !ok || !e.Prefix {
			t.Errorf("ValidatePrefix(%q) = %v, want an InvalidStreamIDError for a prefix", bad, err)
		}
	}
}

func TestTenantPrefixRejectsEscapes(t *testing.T) {
	got, err := framework.TenantPrefix("acme-01.de_x")
	if err != nil || got != "process/acme-01.de_x/" {
		t.Fatalf("TenantPrefix = %q, %v", got, err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../other", "*", "a*", "a?", "[a]", "a b", "a\x00", "ä", "a\\b", "{t}", strings.Repeat("a", 65)} {
		_, err := framework.TenantPrefix(bad)
		if !errors.Is(err, framework.ErrInvalidTenantID) {
			t.Errorf("TenantPrefix(%q) = %v, want ErrInvalidTenantID", bad, err)
		}
	}
	id, err := framework.ProcessStreamID("acme", "malo/51238696788")
	if err != nil || id != "process/acme/malo/51238696788" {
		t.Errorf("ProcessStreamID = %q, %v", id, err)
	}
	if _, err := framework.ProcessStreamID("acme", ""); !errors.Is(err, framework.ErrInvalidStreamID) {
		t.Errorf("ProcessStreamID with an empty process = %v, want ErrInvalidStreamID", err)
	}
}

// FuzzValidateStreamID checks that validation never panics, and that every
// accepted ID keeps the properties prefix matching relies on.
func FuzzValidateStreamID(f *testing.F) {
	for _, s := range []string{"process/a/1", "", "a//b", "\x00", "process/\xff", "x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if framework.ValidateStreamID(id) != nil {
			return
		}
		if id == "" || len(id) > framework.MaxStreamIDLength || !utf8.ValidString(id) {
			t.Fatalf("accepted %q", id)
		}
		if strings.Contains(id, "//") || strings.HasPrefix(id, "/") || strings.HasSuffix(id, "/") {
			t.Fatalf("accepted an empty segment in %q", id)
		}
		if framework.ValidatePrefix(id) != nil || len(id) < framework.MaxStreamIDLength && framework.ValidatePrefix(id+"/") != nil {
			t.Fatalf("valid ID %q is not a valid prefix", id)
		}
	})
}

// FuzzTenantPrefix checks that an accepted tenant prefix selects only that
// tenant's streams: no other tenant's stream ID starts with it.
func FuzzTenantPrefix(f *testing.F) {
	for _, s := range []string{"acme", "..", "a/b", "*", "acme-1"} {
		f.Add(s, "other")
	}
	f.Fuzz(func(t *testing.T, tenant, other string) {
		prefix, err := framework.TenantPrefix(tenant)
		if err != nil || tenant == other {
			return
		}
		if framework.ValidateTenantID(other) != nil {
			return
		}
		if strings.HasPrefix("process/"+other+"/x", prefix) {
			t.Fatalf("prefix %q of tenant %q reaches tenant %q", prefix, tenant, other)
		}
	})
}
