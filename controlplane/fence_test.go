package controlplane_test

import (
	"context"
	"testing"

	"github.com/projector-dev/projector/controlplane"
)

func TestFenceTravelsInContext(t *testing.T) {
	if _, ok := controlplane.FenceFrom(context.Background()); ok {
		t.Fatal("a bare context carries a fence")
	}
	want := controlplane.Fence{Projection: "billing", Partition: 3, Epoch: 2, Token: 17}
	got, ok := controlplane.FenceFrom(controlplane.WithFence(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("FenceFrom = %v, %v; want %v", got, ok, want)
	}
	if s := got.String(); s != "billing/partition 3/epoch 2/token 17" {
		t.Errorf("String = %q", s)
	}
}
