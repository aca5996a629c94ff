package redischeckpoint_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

type placed struct {
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

type cancelled struct {
	Customer string `json:"customer"`
}

func ev(typ, data string) framework.Event {
	return framework.Event{StreamID: "order/acme/1", Sequence: 3, EventID: "e3", Type: typ, Data: []byte(data)}
}

func TestHandlersDispatchByType(t *testing.T) {
	var h redischeckpoint.Handlers
	var got []string
	redischeckpoint.Handle(&h, "OrderPlaced", func(e framework.Event, p placed, w *redischeckpoint.Writes) error {
		got = append(got, fmt.Sprintf("placed %s %d", p.Customer, p.Cents))
		w.HIncrBy(w.Key("revenue"), p.Customer, p.Cents)
		return nil
	})
	redischeckpoint.Handle(&h, "OrderCancelled", func(e framework.Event, p *cancelled, w *redischeckpoint.Writes) error {
		got = append(got, "cancelled "+p.Customer+" at "+e.EventID)
		return nil
	})
	w := &redischeckpoint.Writes{}
	for _, e := range []framework.Event{
		ev("OrderPlaced", `{"customer":"c-7","cents":1250}`),
		ev("OrderShipped", `not even JSON`), // no handler: ignored, not decoded
		ev("OrderCancelled", `{"customer":"c-7"}`),
	} {
		if err := h.Apply(e, w); err != nil {
			t.Fatalf("Apply %s: %v", e.Type, err)
		}
	}
	if want := []string{"placed c-7 1250", "cancelled c-7 at e3"}; !slices.Equal(got, want) {
		t.Errorf("handled %q, want %q", got, want)
	}
	if types := h.Types(); !slices.Equal(types, []string{"OrderCancelled", "OrderPlaced"}) {
		t.Errorf("Types = %q", types)
	}
}

func TestHandlersHandlerError(t *testing.T) {
	var h redischeckpoint.Handlers
	boom := errors.New("boom")
	redischeckpoint.Handle(&h, "OrderPlaced", func(framework.Event, placed, *redischeckpoint.Writes) error { return boom })
	if err := h.Apply(ev("OrderPlaced", `{}`), &redischeckpoint.Writes{}); err != boom {
		t.Errorf("Apply = %v, want the handler's error", err)
	}
}

func TestHandlersJSONDecodeError(t *testing.T) {
	var h redischeckpoint.Handlers
	called := false
	redischeckpoint.Handle(&h, "OrderPlaced", func(framework.Event, placed, *redischeckpoint.Writes) error {
		called = true
		return nil
	})
	err := h.Apply(ev("OrderPlaced", `{"customer":"c-7","cents":"lots"}`), &redischeckpoint.Writes{})
	de, ok := errors.AsType[*framework.DecodeError](err)
	if !ok || !errors.Is(err, framework.ErrDecode) {
		t.Fatalf("Apply = %v, want a *framework.DecodeError", err)
	}
	if de.StreamID != "order/acme/1" || de.Sequence != 3 || de.EventType != "OrderPlaced" {
		t.Errorf("DecodeError %+v does not name the event", de)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); !ok || te.Field != "cents" {
		t.Errorf("DecodeError %v does not name the field cents", err)
	}
	if called {
		t.Error("the handler ran on a payload that did not decode")
	}
	if err := h.Apply(ev("OrderPlaced", `{`), &redischeckpoint.Writes{}); !errors.Is(err, framework.ErrDecode) {
		t.Errorf("truncated JSON: %v, want ErrDecode", err)
	}
}

func TestHandlersRejectUnknown(t *testing.T) {
	h := redischeckpoint.Handlers{RejectUnknown: true}
	redischeckpoint.Handle(&h, "OrderPlaced", func(framework.Event, placed, *redischeckpoint.Writes) error { return nil })
	err := h.Apply(ev("OrderShipped", `{}`), &redischeckpoint.Writes{})
	if !errors.Is(err, redischeckpoint.ErrUnknownEventType) {
		t.Fatalf("Apply = %v, want ErrUnknownEventType", err)
	}
	for _, part := range []string{`"OrderShipped"`, "order/acme/1", "sequence 3"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q does not name %s", err, part)
		}
	}
	if err := h.Apply(ev("OrderPlaced", `{}`), &redischeckpoint.Writes{}); err != nil {
		t.Errorf("known type: %v", err)
	}
}

// A Decoder sees a pointer to the handler's payload type, and its error is
// returned unchanged.
func TestHandlersDecoder(t *testing.T) {
	errVersion := errors.New("unsupported schema version")
	h := redischeckpoint.Handlers{Decoder: func(e framework.Event, v any) error {
		if e.SchemaVersion != 1 {
			return fmt.Errorf("%s: %w", e.EventID, errVersion)
		}
		if err := redischeckpoint.JSONDecoder(e, v); err != nil {
			return err
		}
		if p, ok := v.(*placed); ok && p.Cents < 0 {
			return errors.New("cents: negative")
		}
		return nil
	}}
	var seen []any
	redischeckpoint.Handle(&h, "OrderPlaced", func(e framework.Event, p placed, w *redischeckpoint.Writes) error {
		seen = append(seen, p)
		return nil
	})
	w := &redischeckpoint.Writes{}
	e := ev("OrderPlaced", `{"customer":"c-7","cents":5}`)
	if err := h.Apply(e, w); !errors.Is(err, errVersion) {
		t.Errorf("schema version 0: %v, want the decoder's error", err)
	}
	e.SchemaVersion = 1
	if err := h.Apply(e, w); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != (placed{"c-7", 5}) {
		t.Errorf("handler saw %v", seen)
	}
	e.Data = []byte(`{"customer":"c-7","cents":-5}`)
	if err := h.Apply(e, w); err == nil || err.Error() != "cents: negative" || len(seen) != 1 {
		t.Errorf("negative cents: %v (handler ran %d times)", err, len(seen))
	}
}

func TestHandleMisuse(t *testing.T) {
	ok := func(framework.Event, placed, *redischeckpoint.Writes) error { return nil }
	for _, tc := range []struct {
		name     string
		register func(h *redischeckpoint.Handlers)
		panic    string
	}{
		{"twice", func(h *redischeckpoint.Handlers) {
			redischeckpoint.Handle(h, "OrderPlaced", ok)
			redischeckpoint.Handle(h, "OrderPlaced", func(framework.Event, cancelled, *redischeckpoint.Writes) error { return nil })
		}, "OrderPlaced registered twice"},
		{"empty type", func(h *redischeckpoint.Handlers) { redischeckpoint.Handle(h, "", ok) }, "empty event type"},
		{"nil handler", func(h *redischeckpoint.Handlers) { redischeckpoint.Handle[placed](h, "OrderPlaced", nil) }, "nil handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); !strings.Contains(fmt.Sprint(r), tc.panic) {
					t.Errorf("Handle panicked with %v, want %q", r, tc.panic)
				}
			}()
			tc.register(&redischeckpoint.Handlers{})
		})
	}
}

func TestHandlersEmpty(t *testing.T) {
	var h redischeckpoint.Handlers
	if err := h.Apply(ev("OrderPlaced", `{}`), &redischeckpoint.Writes{}); err != nil {
		t.Errorf("empty table: %v", err)
	}
	if len(h.Types()) != 0 {
		t.Errorf("Types = %q", h.Types())
	}
}
