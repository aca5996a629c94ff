package framework_test

import (
	"context"
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

func TestFenceTravelsInContext(t *testing.T) {
	if _, ok := framework.FenceFrom(context.Background()); ok {
		t.Fatal("a bare context carries a fence")
	}
	want := framework.Fence{Projection: "billing", Partition: 3, Epoch: 2, Token: 17}
	got, ok := framework.FenceFrom(framework.WithFence(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("FenceFrom = %v, %v; want %v", got, ok, want)
	}
	if s := got.String(); s != "billing/partition 3/epoch 2/token 17" {
		t.Errorf("String = %q", s)
	}
}
