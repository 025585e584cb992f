package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"testing"
)

func jsonOf(s *State) ([]byte, error) { return json.Marshal(s) }

// FuzzDecode: Decode never panics, and whatever it accepts encodes again
// to bytes that decode to the same encoding (a stable fixed point).
func FuzzDecode(f *testing.F) {
	for _, s := range []*State{sample(), sampleTwo(), {}} {
		b, err := Encode(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("IPMICUSE"))
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// FuzzDecodeBody fuzzes the JSON body behind a valid header: the harness
// computes the length and the checksum, so every input reaches the JSON
// decoder and Validate (FuzzDecode's inputs almost never pass the CRC).
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []*State{sample(), sampleTwo(), {}} {
		j, err := jsonOf(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(j)
	}
	for _, j := range []string{`{}`, `{"devices":null}`, `{"devices":[{"name":"ipmi0","kind":"ipmi","last_fh":1}]}`,
		`{"more":[{"device":"ipmi1"}]}`, `{"devices":[],"ipmi":{}}`} {
		f.Add([]byte(j))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<20 {
			return
		}
		b := make([]byte, headerSize, headerSize+len(body))
		copy(b, magic[:])
		binary.LittleEndian.PutUint32(b[8:], Version)
		binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(body, castagnoli))
		binary.LittleEndian.PutUint64(b[16:], uint64(len(body)))
		b = append(b, body...)
		s := checkDecode(t, b)
		if s == nil {
			return
		}
		// What Decode accepts is consistent: every IPMI device has exactly
		// one interface state, as the restoring process relies on.
		for _, d := range s.Devices {
			if d.Kind == KindIPMI && s.Interface(d.Name) == nil && s.IPMI == nil {
				t.Fatalf("accepted IPMI device %s without an interface state", d.Name)
			}
		}
	})
}

// checkDecode decodes b and, if it is accepted, checks the encoding is a
// stable fixed point; it returns the decoded state or nil.
func checkDecode(t *testing.T, b []byte) *State {
	s, err := Decode(b)
	if err != nil {
		return nil
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
	return s
}
