package state

import (
	"bytes"
	"encoding/json"
	"testing"
)

func jsonOf(s *State) ([]byte, error) { return json.Marshal(s) }

// FuzzDecode: Decode never panics, and whatever it accepts encodes again
// to bytes that decode to the same encoding (a stable fixed point).
func FuzzDecode(f *testing.F) {
	for _, s := range []*State{sample(), {}} {
		b, err := Encode(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("IPMICUSE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		b1, err := Encode(s)
		if err != nil {
			t.Fatalf("Decode accepted a state Encode refuses: %v", err)
		}
		s2, err := Decode(b1)
		if err != nil {
			t.Fatalf("re-encoded state refused: %v", err)
		}
		b2, err := Encode(s2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable: %v", err)
		}
	})
}
