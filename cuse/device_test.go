package cuse

import (
	"reflect"
	"testing"
)

// TestIoctlInRetry checks the retry replies built in an IoctlIn's storage:
// empty ranges are left out, in-ranges come before out-ranges, lists longer
// than the storage still come out whole, and a later reply built in the
// same IoctlIn does not change what an earlier one was copied to.
func TestIoctlInRetry(t *testing.T) {
	many := make([]Iovec, 2*scratchIovecs)
	for i := range many {
		many[i] = Iovec{Base: uint64(i) << 12, Len: uint64(i + 1)}
	}
	tests := []struct {
		name          string
		in, out       []Iovec
		wantIn, wantO []Iovec
	}{
		{"in only", []Iovec{{1, 2}}, nil, []Iovec{{1, 2}}, nil},
		{"out only", nil, []Iovec{{3, 4}}, nil, []Iovec{{3, 4}}},
		{"empty ranges dropped", []Iovec{{1, 0}, {2, 8}, {3, 0}}, []Iovec{{4, 0}, {5, 1}}, []Iovec{{2, 8}}, []Iovec{{5, 1}}},
		{"nothing", []Iovec{{1, 0}}, nil, nil, nil},
		{"same range both ways", []Iovec{{7, 48}}, []Iovec{{7, 48}}, []Iovec{{7, 48}}, []Iovec{{7, 48}}},
		{"more than the storage", many, many[:3], many, many[:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in IoctlIn
			got := in.Retry(tt.in, tt.out)
			if !got.Retry || !reflect.DeepEqual(got.InIovs, tt.wantIn) || !reflect.DeepEqual(got.OutIovs, tt.wantO) {
				t.Fatalf("Retry = %+v, want in %v out %v", got, tt.wantIn, tt.wantO)
			}
			// Appending to one list must not overwrite the other.
			if len(got.InIovs) > 0 && len(got.OutIovs) > 0 {
				_ = append(got.InIovs, Iovec{99, 99})
				if !reflect.DeepEqual(got.OutIovs, tt.wantO) {
					t.Errorf("appending to InIovs changed OutIovs: %v", got.OutIovs)
				}
			}
		})
	}
}

// TestIoctlInOutBuf: OutBuf gives zeroed bytes of the asked length, and
// reuses its storage for the next request's reply.
func TestIoctlInOutBuf(t *testing.T) {
	var in IoctlIn
	b := in.OutBuf(20)
	if len(b) != 20 {
		t.Fatalf("len %d", len(b))
	}
	for i := range b {
		b[i] = 0xAA
	}
	c := in.OutBuf(10)
	if &c[0] != &b[0] {
		t.Error("the storage was not reused")
	}
	for _, v := range c {
		if v != 0 {
			t.Fatalf("OutBuf gave % x, want zeros", c)
		}
	}
	if big := in.OutBuf(4096); len(big) != 4096 {
		t.Errorf("len %d", len(big))
	}
}
