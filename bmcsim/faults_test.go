package bmcsim

import "testing"

// TestFaultRandReplays: a garbage fault's bytes follow from its seed alone,
// so a failing seed replays; another seed gives other bytes.
func TestFaultRandReplays(t *testing.T) {
	draw := func(seed uint64) (out [16]uint32) {
		r := FaultRand(seed)
		for i := range out {
			out[i] = r.Uint32()
		}
		return out
	}
	if a, b := draw(42), draw(42); a != b {
		t.Error("FaultRand(42) gave two different sequences")
	}
	if draw(42) == draw(43) {
		t.Error("FaultRand(42) and FaultRand(43) gave the same sequence")
	}
}
