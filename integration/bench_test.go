package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// benchDepths are the outstanding-request depths measured per mode.
var benchDepths = []int{1, 8}

// benchRe matches ipmiprobe bench's result line.
var benchRe = regexp.MustCompile(`bench depth=(\d+) n=(\d+) errors=(\d+) elapsed_ms=[0-9.]+ req_per_s=(\d+) p50_us=(\d+) p99_us=(\d+)`)

// benchResult is one ipmiprobe bench line.
type benchResult struct {
	depth, n, errors   int
	rate, p50us, p99us float64
}

func parseBench(out []byte) (benchResult, error) {
	m := benchRe.FindSubmatch(out)
	if m == nil {
		return benchResult{}, fmt.Errorf("no bench line in %q", out)
	}
	f := func(i int) float64 { v, _ := strconv.ParseFloat(string(m[i]), 64); return v }
	return benchResult{depth: int(f(1)), n: int(f(2)), errors: int(f(3)), rate: f(4), p50us: f(5), p99us: f(6)}, nil
}

// TestBenchVM measures Get Device ID round trips through the kernel driver
// and through ipmi-cuse on QEMU's internal BMC, one boot per mode in the
// same run, sequential (depth 1) and pipelined (depth 8), and logs a
// markdown table with the shim/kernel ratio. It runs only with
// IPMI_CUSE_VM=1 and IPMI_CUSE_BENCH=1 (`make bench-vm`); IPMI_CUSE_BENCH_N
// sets the measured requests per depth (default 1000). It fails only when
// a run does not complete or has request errors: figures from a shared
// 2-core machine under CPU emulation are reported, not asserted.
func TestBenchVM(t *testing.T) {
	env := testEnv(t)
	if os.Getenv("IPMI_CUSE_BENCH") != "1" {
		t.Skip("VM benchmark: runs with IPMI_CUSE_BENCH=1 (make bench-vm)")
	}
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("IPMI_CUSE_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	bins := probeBins(t)
	var cmds []testbed.Command
	for _, d := range benchDepths {
		cmds = append(cmds, testbed.Command{Name: fmt.Sprintf("bench_depth_%d", d), Timeout: 300,
			Args: []string{probeGuestPath, "bench", "-n", strconv.Itoa(n), "-depth", strconv.Itoa(d)}})
	}
	cmds = append(cmds, testbed.Command{Name: "micro", Timeout: 300, Args: []string{probeGuestPath, "micro", "-n", "200"}})
	results := map[testbed.Mode]map[int]benchResult{}
	micro := map[testbed.Mode]map[string]string{}
	for _, mode := range []testbed.Mode{testbed.KernelMode, testbed.ShimMode} {
		dp := ""
		if mode == testbed.ShimMode {
			dp = daemonPath
		}
		o := bootWith(t, env, qemuBMC, mode, dp, cmds, bins)
		saveProbeOutput(t, string(mode)+"-bench", o)
		if dir := os.Getenv("IPMI_CUSE_PROBE_OUT"); dir != "" && mode == testbed.ShimMode {
			if err := os.WriteFile(filepath.Join(dir, "shim-bench-daemon.log"), o.Files[testbed.GuestDaemonLog], 0o644); err != nil {
				t.Error(err)
			}
		}
		micro[mode] = map[string]string{}
		if r := o.Command("micro"); r == nil || r.Exit != 0 {
			t.Errorf("%s mode, micro: %+v", mode, r)
		} else {
			for _, m := range microRe.FindAllSubmatch(r.Stdout, -1) {
				micro[mode][string(m[1])] = string(m[2])
			}
		}
		results[mode] = map[int]benchResult{}
		for i, d := range benchDepths {
			r := o.Command(cmds[i].Name)
			if r == nil || r.Exit != 0 {
				t.Fatalf("%s mode, depth %d: %+v", mode, d, r)
			}
			br, err := parseBench(r.Stdout)
			if err != nil {
				t.Fatalf("%s mode, depth %d: %v", mode, d, err)
			}
			if br.errors > 0 {
				t.Errorf("%s mode, depth %d: %d request errors", mode, d, br.errors)
			}
			results[mode][d] = br
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nGet Device ID round trips, QEMU ipmi-bmc-sim + isa-ipmi-kcs, TCG, %d requests per row:\n\n", n)
	b.WriteString("| mode | depth | req/s | p50 (µs) | p99 (µs) | shim/kernel req/s |\n|---|---|---|---|---|---|\n")
	for _, d := range benchDepths {
		k := results[testbed.KernelMode][d]
		for _, mode := range []testbed.Mode{testbed.KernelMode, testbed.ShimMode} {
			r := results[mode][d]
			ratio := "1.00"
			if mode == testbed.ShimMode && k.rate > 0 {
				ratio = fmt.Sprintf("%.2f", r.rate/k.rate)
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f | %s |\n", mode, d, r.rate, r.p50us, r.p99us, ratio)
		}
	}
	b.WriteString("\nThe pieces of a round trip (ipmiprobe micro, 200 calls each, average µs per call):\n\n")
	b.WriteString("| piece | kernel (µs) | shim (µs) |\n|---|---|---|\n")
	for _, p := range microPieces {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", p, micro[testbed.KernelMode][p], micro[testbed.ShimMode][p])
	}
	t.Log(b.String())
}

// microRe matches ipmiprobe micro's lines; microPieces is their order.
var (
	microRe     = regexp.MustCompile(`(?m)^micro (\S+) avg_us=([0-9.]+)$`)
	microPieces = []string{"get_timing_parms", "receive_empty", "poll_empty", "send_only", "round_trip"}
)
