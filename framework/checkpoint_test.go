package framework_test

import (
	"encoding/json"
	"errors"
	"maps"
	"testing"

	"github.com/projector-dev/projector/framework"
)

func TestCheckpointAdvanceNeverMovesBack(t *testing.T) {
	var cp framework.GlobalProjectionCheckpoint // zero value is usable
	if !cp.Advance("s/a", 3) || cp.Advance("s/a", 2) || cp.Advance("s/a", 3) {
		t.Fatal("Advance must report moves forward only")
	}
	if cp.Cursor("s/a") != 3 || cp.Cursor("s/unknown") != 0 {
		t.Errorf("cursors %d and %d, want 3 and 0", cp.Cursor("s/a"), cp.Cursor("s/unknown"))
	}
	base := cp.Clone()
	cp.Advance("s/a", 5)
	cp.Advance("s/b", 1)
	if moved := cp.MovedSince(base); !maps.Equal(moved, map[string]uint64{"s/a": 5, "s/b": 1}) {
		t.Errorf("MovedSince = %v", moved)
	}
	if base.Cursor("s/a") != 3 {
		t.Error("Clone shares state with the original")
	}
	base.Merge(&cp)
	if !base.Equal(&cp) {
		t.Errorf("after Merge %v != %v", maps.Collect(base.All()), maps.Collect(cp.All()))
	}
}

func TestCheckpointJSON(t *testing.T) {
	cp := framework.NewGlobalProjectionCheckpoint()
	cp.Advance("process/t/a", 2)
	cp.Advance("process/t/b", 1<<63)
	raw, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":1,"cursors":{"process/t/a":2,"process/t/b":9223372036854775808}}`
	if string(raw) != want {
		t.Errorf("JSON = %s, want %s", raw, want)
	}
	var back framework.GlobalProjectionCheckpoint
	if err := json.Unmarshal(raw, &back); err != nil || !back.Equal(cp) {
		t.Errorf("round trip = %v, %v", maps.Collect(back.All()), err)
	}
	empty, _ := json.Marshal(framework.NewGlobalProjectionCheckpoint())
	if string(empty) != `{"version":1,"cursors":{}}` {
		t.Errorf("empty checkpoint JSON = %s", empty)
	}
	for _, bad := range []string{
		`{"version":2,"cursors":{}}`,
		`{"version":1,"cursors":{"process/t/a":-1}}`,
		`{"version":1,"cursors":{"process/t/a":1.5}}`,
		`{"version":1,"cursors":{"process/t/a":"3"}}`,
		`{"version":1,"cursors":{"":3}}`,
		`{"version":1,"cursors":{"a//b":3}}`,
		`[]`,
	} {
		var cp framework.GlobalProjectionCheckpoint
		if err := json.Unmarshal([]byte(bad), &cp); !errors.Is(err, framework.ErrInvalidCheckpoint) {
			t.Errorf("Unmarshal(%s) = %v, want ErrInvalidCheckpoint", bad, err)
		}
	}
}

// FuzzCheckpointJSON checks that decoding never panics, and that whatever
// decodes re-encodes to something that decodes to the same cursors.
func FuzzCheckpointJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"cursors":{"process/t/a":2}}`))
	f.Add([]byte(`{"version":1,"cursors":{"a":0,"b":18446744073709551615}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cp framework.GlobalProjectionCheckpoint
		if err := json.Unmarshal(data, &cp); err != nil {
			// Syntax errors are the json package's own; everything the
			// checkpoint rejects wraps ErrInvalidCheckpoint.
			if _, syntax := errors.AsType[*json.SyntaxError](err); !syntax && !errors.Is(err, framework.ErrInvalidCheckpoint) {
				t.Fatalf("error %v does not wrap ErrInvalidCheckpoint", err)
			}
			return
		}
		for id, seq := range cp.All() {
			if seq == 0 || framework.ValidateStreamID(id) != nil {
				t.Fatalf("decoded cursor %q=%d", id, seq)
			}
		}
		raw, err := json.Marshal(&cp)
		if err != nil {
			t.Fatal(err)
		}
		var back framework.GlobalProjectionCheckpoint
		if err := json.Unmarshal(raw, &back); err != nil || !back.Equal(&cp) {
			t.Fatalf("re-decoding %s: %v", raw, err)
		}
	})
}
