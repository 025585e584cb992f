package kcsbmc_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

func isOp(err error, op **kcs.OpError) bool { return errors.As(err, op) }

// FuzzBMCRegisterSequence applies random register accesses and faults to
// a BMC. It must never panic or block, and from whatever state the
// sequence leaves, a host's error recovery must bring it back: after
// ClearFaults the next transaction succeeds.
func FuzzBMCRegisterSequence(f *testing.F) {
	f.Add([]byte{0, 1, 0x61, 2, 0x18, 2, 0x01})
	f.Add([]byte{1, 0x62, 2, 0x00, 3, 3, 3})
	f.Add([]byte{6, 1, 0x60, 2, 0x00, 2, 0x68, 4, 5, 0x10, 7, 8})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := kcsbmc.New(&echo{})
		for i := 0; i < len(ops); i++ {
			arg := byte(0)
			if i+1 < len(ops) {
				arg = ops[i+1]
			}
			switch ops[i] % 10 {
			case 0:
				b.ReadStatus()
			case 1:
				b.WriteCommand(arg)
				i++
			case 2:
				b.WriteData(arg)
				i++
			case 3:
				b.ReadData()
			case 4:
				b.Reset()
			case 5:
				b.ForceError(arg)
				i++
			case 6:
				b.SetGarbage(kcsbmc.Garbage{Status: arg&1 != 0, Data: arg&2 != 0, Count: int(arg >> 2), Seed: uint64(i)})
				i++
			case 7:
				b.SetByteLatency(time.Duration(arg) * time.Microsecond)
				i++
			case 8:
				b.ResetAfterWrites(int(arg % 8))
				i++
			case 9:
				b.FailWrites(arg, int(arg%3))
				i++
			}
		}
		b.ClearFaults()
		h := kcs.New(b, kcs.Config{WaitTimeout: 5 * time.Millisecond, TransactionTimeout: time.Second,
			ErrorStatusWait: 5 * time.Millisecond})
		resp, err := h.Transact([]byte{0x18, 0x01, 0x42}, nil, time.Time{})
		if err != nil || string(resp) != "\x1c\x01\x00\x42" {
			t.Fatalf("transaction after the sequence: % x, %v", resp, err)
		}
	})
}
