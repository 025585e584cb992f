package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// The message handler's acceptance runs in TestDifferentialSimBMC's two
// boots (no extra boot): simCorpus is appended to the corpus there, and
// while those boots run a host-side driver (startSimDriver) watches the
// guest's output and acts on the simulated BMC when certain commands
// start: it puts an event into the event buffer, injects incoming IPMB
// commands, and counts the Send Message requests the driver sends. What
// it saw is kept in the boot's Output.Files under simDriverFile and
// compared between the modes like a command's output.

// satellite is bmcsim's default IPMB controller on channel 0; absentSA is
// an address nobody answers (bmcsim NAKs the write: 0x83, which the
// driver retries until it gives up with 0xC3).
const (
	satellite = "0x72"
	absentSA  = "0x74"
)

// simCorpus is run only against bmcsim: QEMU's BMC has no IPMB behind it.
// It runs after the main corpus, in this order, in the same boot.
//
// The probe runs that wait for something the host injects (events_host,
// autoreply, regcmd) send nothing else meanwhile: each driver must notice
// the BMC's attention on an idle interface by itself (the kernel's ipmi_si
// through the KCS interrupt, which QEMU raises once bmcsim/vmserial has
// sent VM_CMD_ENABLE_IRQ).
var simCorpus = []corpusEntry{
	// Bridging through Send Message to the satellite: ipmitool's openipmi
	// interface sends to an IPMB address (channel 0, slave 0x72).
	{name: "bridged_mc_info", args: []string{"ipmitool", "-t", satellite, "-b", "0", "mc", "info"}, wantOut: "Manufacturer ID           : 32473"},
	{name: "bridged_raw_get_device_id", args: []string{"ipmitool", "-t", satellite, "-b", "0", "raw", "0x06", "0x01"}, wantOut: " 01 01 02 03 02"},
	// The satellite answers anything but Get Device ID with 0xC1: a
	// completion code that comes back inside the bridged reply.
	{name: "bridged_raw_invalid_cmd", args: []string{"ipmitool", "-t", satellite, "-b", "0", "raw", "0x06", "0xf0"}, wantExit: -1, wantOut: "rsp=0xc1"},
	// freeipmi's bridging over the same device (driver forced to OPENIPMI so
	// the tools cannot fall back to driving KCS themselves).
	{name: "ipmi_raw_bridged", args: []string{"ipmi-raw", "-D", "OPENIPMI", "--target-channel-number=0", "--target-slave-address=" + satellite, "0", "6", "1"}, wantOut: "rcvd: 01 00 01 01 02 03"},
	{name: "bmc_info_bridged", args: []string{"bmc-info", "-D", "OPENIPMI", "--target-channel-number=0", "--target-slave-address=" + satellite, "--get-device-id"}, wantOut: "Manufacturer ID"},
	// The reply's address, msgid and data as the ABI delivers them.
	{name: "probe_bridge", args: []string{probeGuestPath, "msghandler", "bridge", "-sa", satellite}, wantOut: "reply: type=1 msgid=4242 netfn=0x07 cmd=0x01 addr_len=8 addr=01 00 00 00 00 00 72 00 data_len=12 data=00 01 01 02 03 02 01 d9 7e 00 06 0c"},
	// Timeout path, the one case with the default timing (5 transmissions
	// 2 s apart: ~10 s per mode), then the same through SEND_COMMAND_SETTIME
	// with 1 retry 1 s apart, whose synthesized reply is printed whole.
	{name: "bridged_absent", args: []string{"ipmitool", "-t", absentSA, "-b", "0", "raw", "0x06", "0x01"}, wantExit: -1, wantOut: "rsp=0xc3): Timeout"},
	{name: "probe_bridge_absent_settime", args: []string{probeGuestPath, "msghandler", "bridge", "-sa", absentSA, "-retries", "1", "-retry-ms", "1000"}, wantOut: "reply: type=1 msgid=4242 netfn=0x07 cmd=0x01 addr_len=8 addr=01 00 00 00 00 00 74 00 data_len=1 data=c3"},
	// Events: one the BMC generates from a Platform Event another file
	// sends, then one the host puts into the event buffer (simDriver).
	{name: "events_platform", args: []string{probeGuestPath, "msghandler", "events", "-wait", "1", "-timeout", "15s", "-platform"}, wantOut: "event_1: type=2 msgid=0 netfn=0x07 cmd=0x35 addr_len=8 addr=0c 00 00 00 0f 00 00 00 data_len=16"},
	{name: "events_host", args: []string{probeGuestPath, "msghandler", "events", "-wait", "1", "-timeout", "15s"}, wantOut: "event_1: type=2 msgid=0 netfn=0x07 cmd=0x35 addr_len=8 addr=0c 00 00 00 0f 00 00 00 data_len=16 data=" + hostEventHex},
	// An incoming command nobody registered for is answered by the driver
	// with 0xC1 through Send Message: simDriver counts it (see below).
	{name: "autoreply", args: []string{probeGuestPath, "msghandler", "idle", "-for", "3s"}, wantOut: "idle: ok"},
	// A registered command's round trip: simDriver injects the command
	// every 500 ms while this runs; the probe answers the first one.
	{name: "regcmd", args: []string{probeGuestPath, "msghandler", "regcmd", "-netfn", "0x30", "-cmd", "0x11", "-timeout", "15s"}, wantOut: "response_result: type=4 msgid=42 netfn=0x31 cmd=0x11 addr_len=8 addr=01 00 00 00 00 00 72 00 data_len=1 data=00", norm: []string{"probe-info"}},
}

// hostEvent is the event record simDriver puts into the event buffer: a
// system event record (ID 1234h) from generator 20h, temperature sensor
// 30h, threshold assertion, with fixed bytes where the timestamp goes.
var hostEvent = []byte{0x34, 0x12, 0x02, 0xde, 0xad, 0xbe, 0xef, 0x20, 0x00, 0x04, 0x01, 0x30, 0x01, 0x57, 0x57, 0x50}

const hostEventHex = "34 12 02 de ad be ef 20 00 04 01 30 01 57 57 50"

// simDriverFile is the Output.Files key of what simDriver saw (not a guest file).
const simDriverFile = "host:simDriver"

// simActions are run by simDriver while the named guest command runs; ctx
// ends when the command does. Each returns one line for simDriverFile,
// which must not vary between boots.
var simActions = map[string]func(ctx context.Context, b *bmcsim.BMC) string{
	"events_host": func(ctx context.Context, b *bmcsim.BMC) string {
		// Give the listener a second to set gets_events; if the event comes
		// earlier, both drivers keep it for the first listener anyway.
		if !sleepCtx(ctx, time.Second) {
			return "events_host: ended before the event was added"
		}
		for {
			err := b.AddEvent(hostEvent)
			if err == nil {
				return "events_host: event added"
			}
			if !errors.Is(err, bmcsim.ErrQueueFull) || !sleepCtx(ctx, 100*time.Millisecond) {
				return "events_host: " + err.Error()
			}
		}
	},
	"autoreply": func(ctx context.Context, b *bmcsim.BMC) string {
		// Let Send Messages still caused by earlier commands settle, then
		// inject one command nobody is registered for: the driver must
		// answer it with exactly one Send Message (0xC1 to the requester).
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return "autoreply: ended too early"
		}
		before := b.Stats().Bridged
		if err := b.InjectIPMBRequest(0x72, 0x30, 0x12, 0x15, []byte{0x07}); err != nil {
			return "autoreply: " + err.Error()
		}
		<-ctx.Done()
		return fmt.Sprintf("autoreply: %d Send Message for one unregistered command", b.Stats().Bridged-before)
	},
	"regcmd": func(ctx context.Context, b *bmcsim.BMC) string {
		// Until the probe has registered, each injection gets the automatic
		// 0xC1 answer; the probe takes the first one after registering.
		// rqSeq 42 comes back as the command's msgid and the answer's seq.
		errs := 0
		for {
			if err := b.InjectIPMBRequest(0x72, 0x30, 0x11, 42, []byte{0x01, 0x02, 0x03}); err != nil && !errors.Is(err, bmcsim.ErrQueueFull) {
				errs++
			}
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return fmt.Sprintf("regcmd: injection errors %d", errs)
			}
		}
	},
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// simDriver follows a boot's guest output (dir/guest.out, which QEMU
// writes as the guest prints) and runs simActions for the commands that
// have one, from the guest's "@@@CMD name" line to its "@@@RC" line.
type simDriver struct {
	bmc  *bmcsim.BMC
	path string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	notes    []string
}

// startSimDriver starts following dir/guest.out for sim's boot.
func startSimDriver(sim *testbed.SimBMC, dir string) *simDriver {
	ctx, cancel := context.WithCancel(context.Background())
	d := &simDriver{bmc: sim.BMC, path: filepath.Join(dir, "guest.out"), cancel: cancel, done: make(chan struct{})}
	go d.run(ctx)
	return d
}

func (d *simDriver) note(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notes = append(d.notes, s)
}

func (d *simDriver) run(ctx context.Context) {
	defer close(d.done)
	var (
		off     int64
		partial []byte
		stopCmd context.CancelFunc
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	endCmd := func() {
		if stopCmd != nil {
			stopCmd()
			wg.Wait() // keep notes in command order
			stopCmd = nil
		}
	}
	defer endCmd()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b, err := readFrom(d.path, off)
		if err != nil || len(b) == 0 {
			continue
		}
		off += int64(len(b))
		partial = append(partial, b...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			line := string(partial[:i])
			partial = partial[i+1:]
			switch {
			case strings.HasPrefix(line, "@@@CMD "):
				endCmd()
				act := simActions[strings.TrimPrefix(line, "@@@CMD ")]
				if act == nil {
					continue
				}
				cctx, cancel := context.WithCancel(ctx)
				stopCmd = cancel
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.note(act(cctx, d.bmc))
				}()
			case strings.HasPrefix(line, "@@@RC "), line == "@@@DONE":
				endCmd()
			}
		}
	}
}

// readFrom returns the bytes of the file at path from off to its end.
func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}

// stop ends the driver (waiting for running actions) and returns what it
// saw, one line per action; later calls return the same.
func (d *simDriver) stop() []byte {
	d.stopOnce.Do(func() {
		d.cancel()
		<-d.done
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.notes) == 0 {
		return nil
	}
	return []byte(strings.Join(d.notes, "\n") + "\n")
}

// simDriverWant is what the driver must see in kernel mode; the shim must
// see the same.
const simDriverWant = "events_host: event added\n" +
	"autoreply: 1 Send Message for one unregistered command\n" +
	"regcmd: injection errors 0\n"

// checkSimCorpusKernel checks simCorpus's kernel run on its own (exit
// status and telltale), and what simDriver saw, so the test cannot pass
// with both modes failing alike.
func checkSimCorpusKernel(t *testing.T, kern *testbed.Output) {
	t.Helper()
	saveProbeOutput(t, "simbmc-kernel", kern)
	checkKernelEntries(t, kern, simCorpus)
	t.Run("simDriver", func(t *testing.T) {
		if got := string(kern.Files[simDriverFile]); got != simDriverWant {
			t.Errorf("host side saw:\n%s\nwant:\n%s", got, simDriverWant)
		}
	})
}

// compareSimDriver requires the shim boot's simDriver lines to be the
// kernel boot's.
func compareSimDriver(t *testing.T, kern, shim *testbed.Output) {
	t.Helper()
	saveProbeOutput(t, "simbmc-shim", shim)
	t.Run("simDriver", func(t *testing.T) {
		if d := diff("simDriver", kern.Files[simDriverFile], shim.Files[simDriverFile]); d != "" {
			t.Error(d)
		}
	})
}
