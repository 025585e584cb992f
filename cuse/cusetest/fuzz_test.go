package cusetest

import (
	"bytes"
	"context"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// FuzzKernel drives the Kernel with device replies decoded from arbitrary
// bytes: retries with iovecs in and around two mapped regions, finals with
// output and a result, errnos. Whatever the device does, the call must end
// within the round bound, the caller must see 0, the device's own errno or
// one the kernel makes (EFAULT, EIO, ENOMEM, ENOTTY), and no byte outside
// the last round's out-iovecs may change.
func FuzzKernel(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{0, 0x11, 0, 8, 4, 8, 1, 3, 0, 0, 0, 0, 9, 8, 7})
	f.Add([]byte{0, 0x10, 30, 10, 1, 5, 0xF9, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5})
	f.Add([]byte{2, 0x26})
	const base, size = 0x1000, 32 // mapped: [0x1000, 0x1020); iovecs reach to 0x1040
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		var replies []cuse.IoctlOut
		for len(data) > 0 && len(replies) < 10 {
			switch next() % 3 {
			case 0:
				c := next()
				var in, out []cuse.Iovec
				for range c & 3 {
					in = append(in, iov(base+uint64(next()%64), uint64(next()%24)))
				}
				for range c >> 4 & 3 {
					out = append(out, iov(base+uint64(next()%64), uint64(next()%24)))
				}
				replies = append(replies, retry(in, out))
			case 1:
				n := int(next() % 32)
				res := int32(uint32(next()) | uint32(next())<<8 | uint32(next())<<16 | uint32(next())<<24)
				out := make([]byte, n)
				for i := range out {
					out[i] = next()
				}
				replies = append(replies, cuse.IoctlOut{Out: out, Result: res})
			case 2:
				replies = append(replies, cuse.IoctlOut{Errno: syscall.Errno(next())})
			}
		}
		mem := NewMemory()
		before := bytes.Repeat([]byte{0xA5}, size)
		user := mem.Map(base, append([]byte(nil), before...))
		rec := &recorder{TB: t}
		k := NewKernel(rec, mem)
		dev := &scripted{replies: replies}
		result := make(chan syscall.Errno, 1)
		go func() {
			defer close(result)
			result <- k.Ioctl(context.Background(), dev, 1, base, 0)
		}()
		errno, finished := <-result
		if len(dev.seen) > DefaultMaxRounds {
			t.Fatalf("device saw %d rounds", len(dev.seen))
		}
		if !finished {
			if rec.fatal == "" {
				t.Fatal("call neither finished nor reported")
			}
			return
		}
		if k.Rounds != len(dev.seen) {
			t.Fatalf("Rounds %d, device saw %d", k.Rounds, len(dev.seen))
		}
		// The reply that ended the call, and the out-iovecs it was scattered over.
		last := cuse.IoctlOut{Errno: syscall.EINVAL} // scripted's answer once out of replies
		if len(dev.seen) <= len(replies) {
			last = replies[len(dev.seen)-1]
		}
		var outIovs []cuse.Iovec
		if len(dev.seen) >= 2 {
			outIovs = replies[len(dev.seen)-2].OutIovs
		}
		switch errno {
		case 0, syscall.EFAULT, syscall.EIO, syscall.ENOMEM, syscall.ENOTTY, last.Errno, syscall.Errno(-last.Result):
		default:
			t.Fatalf("errno %v; last reply %+v", errno, last)
		}
		for i := range user {
			if user[i] == before[i] {
				continue
			}
			addr := uint64(base + i)
			covered := false
			for _, v := range outIovs {
				covered = covered || addr >= v.Base && addr < v.Base+v.Len
			}
			if last.Retry || !covered {
				t.Fatalf("byte at %#x changed outside the out-iovecs %+v", addr, outIovs)
			}
		}
	})
}
