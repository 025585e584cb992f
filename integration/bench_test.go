package integration

import (
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// benchDepths are the outstanding-request depths measured per server and
// client.
var benchDepths = []int{1, 8}

// benchRe matches the bench line that ipmiprobe bench and the C client
// ipmibench print.
var benchRe = regexp.MustCompile(`bench depth=(\d+) n=(\d+) errors=(\d+) elapsed_ms=[0-9.]+ req_per_s=(\d+) p50_us=(\d+) p99_us=(\d+)`)

// benchResult is one bench line, with the server's counters over the run
// when benchsrv.sh measured them.
type benchResult struct {
	depth, n, errors   int
	rate, p50us, p99us float64
	server, client     string
	total              int     // requests the counters cover (warm-up included)
	syscr, syscw       float64 // the server's read and write system calls
	ctx, nvctx         float64 // its threads' voluntary and involuntary context switches
	cpuNs              float64 // its threads' CPU time (schedstat), ns
	idleMs             float64 // the guest's idle time meanwhile, ms (10 ms ticks)
	// syscalls are the server's system calls by name as perf stat counted
	// them (IPMI_CUSE_BENCH_PERF=1, C client, depth 1; "all": every one);
	// nil when not counted.
	syscalls           map[string]float64
	sysTotal           int     // requests the syscalls cover (warm-up included)
	cuseReqs, notifies float64 // CUSE requests and poll notifications the server counted (-1: unknown)
}

func parseBench(out []byte) (benchResult, error) {
	m := benchRe.FindSubmatch(out)
	if m == nil {
		return benchResult{}, fmt.Errorf("no bench line in %q", out)
	}
	f := func(i int) float64 { v, _ := strconv.ParseFloat(string(m[i]), 64); return v }
	return benchResult{depth: int(f(1)), n: int(f(2)), errors: int(f(3)), rate: f(4), p50us: f(5), p99us: f(6)}, nil
}

// cpuPerTrip is the server's CPU time per round trip in ns (warm-up
// included, as its other counters), or 0 when no request was counted.
func (r benchResult) cpuPerTrip() float64 {
	if r.total == 0 {
		return 0
	}
	return r.cpuNs / float64(r.total)
}

// benchSrvRe matches benchsrv.sh's fields after a bench line.
var benchSrvRe = regexp.MustCompile(`server=(\S+) client=(\S+) total=(\d+) syscr=(-?\d+) syscw=(-?\d+) ctxsw=(-?\d+) nvcsw=(-?\d+) cpu_ns=(-?\d+) idle_ms=(-?\d+)(.*)`)

// parseBenchSrv parses every line benchsrv.sh printed.
func parseBenchSrv(out []byte) ([]benchResult, error) {
	var rs []benchResult
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "bench ") {
			continue
		}
		r, err := parseBench([]byte(l))
		if err != nil {
			return nil, err
		}
		m := benchSrvRe.FindStringSubmatch(l)
		if m == nil {
			return nil, fmt.Errorf("no server counters in %q", l)
		}
		num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		r.server, r.client, r.total = m[1], m[2], int(num(m[3]))
		r.syscr, r.syscw, r.ctx, r.nvctx, r.cpuNs = num(m[4]), num(m[5]), num(m[6]), num(m[7]), num(m[8])
		r.idleMs = num(m[9])
		r.cuseReqs, r.notifies = -1, -1
		for _, kv := range strings.Fields(m[10]) {
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case k == "requests", k == "cuse_requests":
				r.cuseReqs = num(v)
			case k == "notifies", k == "cuse_notifies":
				r.notifies = num(v)
			case strings.HasPrefix(k, "sys_"):
				if r.syscalls == nil {
					r.syscalls = map[string]float64{}
				}
				r.syscalls[strings.TrimPrefix(k, "sys_")] = num(v)
			}
		}
		if r.syscalls != nil {
			r.sysTotal = r.total
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("no bench line in %q", out)
	}
	return rs, nil
}

// benchSrv is the guest script that measures servers: for the C and the Go
// client at each depth, ROUNDS times over, it runs each server in turn
// (interleaved, so a change in the host's load shows in every server's
// rounds alike), each started afresh so its counters cover one run: it
// reads the server's /proc counters (read and write system calls from io,
// voluntary and involuntary context switches of all its threads), runs
// the client, reads them again, stops the server with SIGTERM and picks
// the CUSE request and notification counts (and ipmi-cuse's KCS counters)
// from what the server printed on the way out. kernel measures the kernel
// driver (no server process).
//
//	benchsrv.sh N ROUNDS "SERVERS" "CLIENTS" "DEPTHS"
const benchSrv = `#!/bin/sh
n=$1 rounds=$2 servers=$3 clients=$4 depths=$5 profile=$6 altenv=$7 warm=50
perfev=page-faults,raw_syscalls:sys_enter
if [ "$profile" = perf ]; then
	mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
	echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	for e in read write futex sched_yield epoll_pwait epoll_ctl nanosleep clock_gettime rt_sigprocmask rt_sigreturn madvise mmap munmap tgkill getpid ioctl pread64 pwrite64 ppoll iopl ioperm clock_nanosleep gettid sigaltstack; do
		[ -d /sys/kernel/tracing/events/syscalls/sys_enter_$e ] && perfev=$perfev,syscalls:sys_enter_$e
	done
fi
devof() { case $1 in kernel|kcs|alt) echo /dev/ipmi0 ;; ref) echo /dev/ipmiref ;; sim) echo /dev/ipmisim ;; esac; }
# idle: the guest's idle time in ms (the vCPU waiting for nothing), from
# /proc/stat's idle and iowait ticks (USER_HZ is 100).
idle() { awk '$1 == "cpu" {printf "%d", ($5 + $6) * 10}' /proc/stat; }
counters() {
	[ -z "$pid" ] && { echo "0 0 0 0 0"; return; }
	r=$(sed -n 's/^syscr: //p' /proc/$pid/io); w=$(sed -n 's/^syscw: //p' /proc/$pid/io); c=0; nc=0
	for v in $(cat /proc/$pid/task/*/status | sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p'); do c=$((c+v)); done
	for v in $(cat /proc/$pid/task/*/status | sed -n 's/^nonvoluntary_ctxt_switches:[[:space:]]*//p'); do nc=$((nc+v)); done
	# CPU time of all its threads in ns (schedstat's first field: time on CPU).
	cpu=$(cat /proc/$pid/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}')
	echo "$r $w $c $nc $cpu"
}
gone() { i=0; while [ -e $dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
start() {
	pid=
	case $server in
	kernel) return ;;
	ref) /bin/refcuse ipmiref >/tmp/srv.log 2>&1 & pid=$! ;;
	kcs) IPMI_CUSE_CPUPROFILE=$prof /bin/ipmi-cuse --log-level=info >/tmp/srv.log 2>&1 & pid=$! ;;
	alt) env $altenv /bin/ipmi-cuse-alt --log-level=info >/tmp/srv.log 2>&1 & pid=$! ;;
	sim) IPMI_CUSE_CPUPROFILE=$prof /bin/ipmi-cuse --bmc sim --device ipmisim --log-level=info >/tmp/srv.log 2>&1 & pid=$! ;;
	*) echo "benchsrv: unknown server $server"; exit 2 ;;
	esac
	i=0; while [ ! -c $dev ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	[ -c $dev ] || { echo "benchsrv: $dev did not appear"; cat /tmp/srv.log; exit 1; }
}
stop() {
	[ -z "$pid" ] && return
	kill -TERM $pid; wait $pid; gone
}
case " $servers " in *" kcs "*|*" alt "*)
	# The testbed's daemon serves /dev/ipmi0 already: each run starts its own.
	dev=/dev/ipmi0; for p in $(pidof ipmi-cuse); do kill -TERM $p; done; gone ;;
esac
for client in $clients; do for depth in $depths; do
	round=0
	while [ $round -lt $rounds ]; do round=$((round+1))
		for server in $servers; do
			dev=$(devof $server)
			prof=
			[ "$profile" = profile ] && [ $client = c ] && [ $depth = 1 ] && prof=/tmp/cpu-$server.pprof
			start
			# perf mode: the server's system calls counted (perf stat) in
			# every round, C client at depth 1; its CPU sampled (perf
			# record) in the last one.
			wrap=
			if [ "$profile" = perf ] && [ -n "$pid" ] && [ $client = c ] && [ $depth = 1 ]; then
				wrap="perf stat -x , -o /tmp/pstat -e $perfev -p $pid --"
				[ $round = $rounds ] && wrap="perf record -q -e cpu-clock -F 997 -g -o /tmp/perf-$server.data -p $pid --"
				[ $round = 1 ] && [ $rounds -gt 2 ] && wrap="perf record -q -e page-faults -c 1 -g -o /tmp/pf-$server.data -p $pid --"
			fi
			rm -f /tmp/pstat
			set -- $(counters); r0=$1 w0=$2 c0=$3 n0=$4 t0=$5 i0=$(idle)
			if [ $client = c ]; then out=$($wrap /bin/ipmibench -d $dev -n $n -depth $depth -warmup $warm)
			else out=$(/bin/ipmiprobe bench -dev $dev -n $n -depth $depth -warmup $warm); fi
			rc=$?
			i1=$(idle); set -- $(counters); r1=$1 w1=$2 c1=$3 n1=$4 t1=$5
			stop
			extra=
			[ -n "$pid" ] && extra=$(grep -o '\(requests\|notifies\|kcs_transactions\|kcs_status_reads\|kcs_sleeps\|any_thread\|served_inline\)=[0-9a-z]*' /tmp/srv.log | tr '\n' ' ')
			# perf stat -x: "count,,event,...": sys_NAME=count per event.
			[ -s /tmp/pstat ] && extra="$extra $(awk -F, '$3 ~ /sys_enter/ {e=$3; sub(/.*sys_enter_?/, "", e); if (e == "") e = "all"; printf "sys_%s=%s ", e, $1} $3 == "page-faults" {printf "sys_pagefaults=%s ", $1}' /tmp/pstat)"
			echo "$out server=$server client=$client total=$((n+warm)) syscr=$((r1-r0)) syscw=$((w1-w0)) ctxsw=$((c1-c0)) nvcsw=$((n1-n0)) cpu_ns=$((t1-t0)) idle_ms=$((i1-i0)) round=$round $extra"
			[ $rc = 0 ] || { echo "benchsrv: $client client failed on $server"; cat /tmp/srv.log; exit 1; }
		done
	done
done; done
if [ "$profile" = perf ]; then
	for server in $servers; do
		[ -s /tmp/perf-$server.data ] || continue
		echo "perfreport $server begin"
		perf report -i /tmp/perf-$server.data --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
		perf report -i /tmp/perf-$server.data --stdio --no-children --sort dso,sym -g none --percent-limit 0.4 2>/dev/null | grep -v '^#' | grep -v '^$'
		if [ -s /tmp/pf-$server.data ]; then
			echo "perfreport $server page faults"
			perf report -i /tmp/pf-$server.data --stdio --no-children --sort sym -G --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
		fi
		echo "perfreport $server callers"
		perf report -i /tmp/perf-$server.data --stdio --children --sort sym -g none --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$'
		echo "perfreport $server end"
	done
elif [ -n "$profile" ]; then
	for server in $servers; do
		[ -s /tmp/cpu-$server.pprof ] && echo "profile $server $(base64 /tmp/cpu-$server.pprof | tr -d '\n')"
	done
fi
exit 0
`

// buildC compiles a C source of the repository static for the guest with
// the host's gcc, as integration/guest/cbench's header says.
func buildC(t *testing.T, src, out string) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("the VM benchmark builds its C client and reference server with gcc (apt-get install gcc libc6-dev): %v", err)
	}
	cmd := exec.Command("gcc", "-O2", "-Wall", "-static", "-o", out, filepath.Join(root, src))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
}

// TestBenchVM measures Get Device ID round trips on /dev/ipmi0-like devices
// in the VM against QEMU's internal BMC, in two boots of one run: the
// kernel driver; then, with only cuse loaded, the reference C CUSE server
// (integration/guest/refcuse: canned reply, the fewest safe rounds, what
// any CUSE /dev/ipmi0 must pay), ipmi-cuse --bmc sim (no hardware) and
// ipmi-cuse on the emulated KCS. Each is driven by the C client and by the
// Go client (ipmiprobe bench) at depth 1 and 8. It logs a markdown table
// with the servers' system calls, context switches and CUSE requests per
// round trip, and the headline ratio ipmi-cuse KCS p50 / reference p50.
// It runs only with IPMI_CUSE_VM=1 and IPMI_CUSE_BENCH=1 (`make bench-vm`);
// IPMI_CUSE_BENCH_N sets the measured requests per row (default 1000);
// IPMI_CUSE_BENCH_PERF=1 adds perf's system call counts and CPU profiles
// (see the Makefile). It
// fails only when a run does not complete or has request errors: figures
// from a shared machine under CPU emulation are reported, not asserted.
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
	dir := t.TempDir()
	bins["/bin/ipmibench"] = filepath.Join(dir, "ipmibench")
	buildC(t, "integration/guest/cbench/ipmibench.c", bins["/bin/ipmibench"])
	bins["/bin/refcuse"] = filepath.Join(dir, "refcuse")
	buildC(t, "integration/guest/refcuse/refcuse.c", bins["/bin/refcuse"])
	bins["/bin/benchsrv.sh"] = filepath.Join(dir, "benchsrv.sh")
	if err := os.WriteFile(bins["/bin/benchsrv.sh"], []byte(benchSrv), 0o755); err != nil {
		t.Fatal(err)
	}
	// IPMI_CUSE_BENCH_QUICK=1 measures only the CUSE servers with the C
	// client at depth 1: one boot, for trying a change.
	quick := os.Getenv("IPMI_CUSE_BENCH_QUICK") == "1"
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("IPMI_CUSE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	// IPMI_CUSE_BENCH_PROFILE=1 also takes a CPU profile of ipmi-cuse under
	// the C client at depth 1 (its last round) and logs its top functions.
	profile := ""
	if os.Getenv("IPMI_CUSE_BENCH_PROFILE") == "1" {
		profile = "profile"
	}
	// IPMI_CUSE_BENCH_PERF=1 puts the host's perf in the guest, counts the
	// servers' system calls (perf stat) under the C client at depth 1 and
	// samples their CPU (perf record -g) in the last round: cheaper under
	// TCG than the Go profiler's signals, and the same for the reference.
	if os.Getenv("IPMI_CUSE_BENCH_PERF") == "1" {
		profile = "perf"
		maps.Copy(bins, perfBins(t))
	}
	srvCmd := func(servers []string) testbed.Command {
		clients, depths := "c go", "1 8"
		if quick {
			clients, depths = "c", "1"
		}
		return testbed.Command{Name: "bench_" + strings.Join(servers, "_"), Timeout: 3000,
			Args: []string{"/bin/sh", "/bin/benchsrv.sh", strconv.Itoa(n / rounds), strconv.Itoa(rounds),
				strings.Join(servers, " "), clients, depths, profile, os.Getenv("IPMI_CUSE_BENCH_ALT_ENV")}}
	}
	micro := testbed.Command{Name: "micro", Timeout: 300, Args: []string{probeGuestPath, "micro", "-n", "200"}}
	cuseServers := []string{"ref", "sim", "kcs"}
	// IPMI_CUSE_BENCH_ALT=PATH also measures another build of ipmi-cuse
	// on the emulated KCS in the same rounds, for comparing a change with
	// what it changes under the same load; IPMI_CUSE_BENCH_ALT_ENV gives
	// it environment variables (VAR=value ..., e.g. GODEBUG or GOGC).
	if alt := os.Getenv("IPMI_CUSE_BENCH_ALT"); alt != "" {
		bins["/bin/ipmi-cuse-alt"] = alt
		cuseServers = append(cuseServers, "alt")
	}
	boots := []struct {
		mode    testbed.Mode
		servers []string
	}{
		{testbed.KernelMode, []string{"kernel"}},
		{testbed.ShimMode, cuseServers},
	}
	if quick {
		boots = boots[1:]
	}
	var all []benchResult
	microOut := map[testbed.Mode]map[string]string{}
	for _, b := range boots {
		cmds := []testbed.Command{micro, srvCmd(b.servers)}
		dp := ""
		if b.mode == testbed.ShimMode {
			dp = daemonPath
		}
		o := bootWith(t, env, qemuBMC, b.mode, dp, cmds, bins)
		saveProbeOutput(t, string(b.mode)+"-bench", o)
		microOut[b.mode] = map[string]string{}
		if r := o.Command("micro"); r == nil || r.Exit != 0 {
			t.Errorf("%s mode, micro: %+v", b.mode, r)
		} else {
			for _, m := range microRe.FindAllSubmatch(r.Stdout, -1) {
				microOut[b.mode][string(m[1])] = string(m[2])
			}
		}
		for _, c := range cmds[1:] {
			r := o.Command(c.Name)
			if r == nil || r.Exit != 0 {
				t.Fatalf("%s: %+v", c.Name, r)
			}
			rs, err := parseBenchSrv(r.Stdout)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			logProfiles(t, r.Stdout, daemonPath)
			logPerfReports(t, r.Stdout)
			for _, br := range rs {
				if br.errors > 0 {
					t.Errorf("%s, %s client, depth %d: %d request errors", br.server, br.client, br.depth, br.errors)
				}
			}
			all = append(all, rs...)
		}
	}
	t.Log(benchTable(mergeRounds(all), n, rounds) + roundRatios(all) + microTable(microOut))
}

// roundRatios gives, for each CUSE server, client and depth, the ratio of
// its p50 to the reference's in each round, and their median; then the
// same for the servers' CPU time per round trip. The servers of one round
// run seconds apart, so on a host whose load moves from minute to minute
// these ratios move less than the ratio of the rounds' medians in the
// table.
func roundRatios(all []benchResult) string {
	var b strings.Builder
	b.WriteString("\np50 against the reference's in the same round (round by round; median):\n\n")
	b.WriteString(ratiosBy(all, func(r benchResult) float64 { return r.p50us }))
	b.WriteString("\nServer CPU time per round trip against the reference's in the same round (round by round; median):\n\n")
	b.WriteString(ratiosBy(all, benchResult.cpuPerTrip))
	return b.String()
}

// ratiosBy lists, per CUSE server, client and depth, f of each round
// against the reference's in the same round, and their median.
func ratiosBy(all []benchResult, f func(benchResult) float64) string {
	type key struct {
		server, client string
		depth          int
	}
	byKey := map[key][]float64{}
	for _, r := range all {
		k := key{r.server, r.client, r.depth}
		byKey[k] = append(byKey[k], f(r))
	}
	var b strings.Builder
	for _, client := range []string{"c", "go"} {
		for _, d := range benchDepths {
			ref := byKey[key{"ref", client, d}]
			for _, s := range benchServers[2:] {
				v := byKey[key{s.key, client, d}]
				if len(v) == 0 || len(v) != len(ref) {
					continue
				}
				var ratios []float64
				var each []string
				for i := range v {
					if ref[i] > 0 {
						ratios = append(ratios, v[i]/ref[i])
						each = append(each, fmt.Sprintf("%.2f", v[i]/ref[i]))
					}
				}
				if len(ratios) == 0 {
					continue
				}
				sorted := slices.Clone(ratios)
				slices.Sort(sorted)
				// The host's load only ever adds time, so the rounds'
				// minima are the least disturbed figures.
				fmt.Fprintf(&b, "- %s, %s client, depth %d: %s; median %.2f×; best round against best round %.2f×\n",
					s.name, map[string]string{"c": "C", "go": "Go"}[client], d,
					strings.Join(each, " "), sorted[len(sorted)/2], slices.Min(v)/slices.Min(ref))
			}
		}
	}
	return b.String()
}

// profileRe matches benchsrv.sh's base64 CPU profiles.
var profileRe = regexp.MustCompile(`(?m)^profile (\S+) (\S+)$`)

// logProfiles decodes the CPU profiles in out, keeps them in
// IPMI_CUSE_PROBE_OUT (if set) and logs each one's top functions.
func logProfiles(t *testing.T, out []byte, binary string) {
	t.Helper()
	for _, m := range profileRe.FindAllSubmatch(out, -1) {
		b, err := base64.StdEncoding.DecodeString(string(m[2]))
		if err != nil {
			t.Errorf("profile of %s: %v", m[1], err)
			continue
		}
		dir := os.Getenv("IPMI_CUSE_PROBE_OUT")
		if dir == "" {
			dir = t.TempDir()
		}
		path := filepath.Join(dir, string(m[1])+"-cpu.pprof")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Error(err)
			continue
		}
		top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", binary, path).CombinedOutput()
		if err != nil {
			t.Errorf("go tool pprof %s: %v\n%s", path, err, top)
			continue
		}
		t.Logf("CPU profile of ipmi-cuse (%s), C client, depth 1, last round (%s):\n%s", m[1], path, top)
	}
}

// mergeRounds folds the rounds of each server, client and depth into one
// result: the median of the rounds' rates and percentiles (the host's load
// moves them all), and the counters summed.
func mergeRounds(all []benchResult) []benchResult {
	type key struct {
		server, client string
		depth          int
	}
	groups := map[key][]benchResult{}
	var order []key
	for _, r := range all {
		k := key{r.server, r.client, r.depth}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	median := func(rs []benchResult, f func(benchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var out []benchResult
	for _, k := range order {
		rs := groups[k]
		m := rs[0]
		m.syscalls = maps.Clone(m.syscalls)
		m.rate = median(rs, func(r benchResult) float64 { return r.rate })
		m.p50us = median(rs, func(r benchResult) float64 { return r.p50us })
		m.p99us = median(rs, func(r benchResult) float64 { return r.p99us })
		for _, r := range rs[1:] {
			m.n += r.n
			m.errors += r.errors
			m.total += r.total
			m.syscr += r.syscr
			m.syscw += r.syscw
			m.ctx += r.ctx
			m.nvctx += r.nvctx
			m.cpuNs += r.cpuNs
			m.idleMs += r.idleMs
			if r.syscalls != nil {
				if m.syscalls == nil {
					m.syscalls = map[string]float64{}
				}
				for k, v := range r.syscalls {
					m.syscalls[k] += v
				}
				m.sysTotal += r.total
			}
			if m.cuseReqs >= 0 && r.cuseReqs >= 0 {
				m.cuseReqs += r.cuseReqs
			}
			if m.notifies >= 0 && r.notifies >= 0 {
				m.notifies += r.notifies
			}
		}
		out = append(out, m)
	}
	return out
}

// benchServers names the servers in table order.
var benchServers = []struct{ key, name string }{
	{"kernel", "kernel driver (ipmi_si + ipmi_devintf)"},
	{"ref", "reference C CUSE server (canned reply)"},
	{"sim", "ipmi-cuse --bmc sim"},
	{"kcs", "ipmi-cuse, emulated KCS"},
	{"alt", "ipmi-cuse (IPMI_CUSE_BENCH_ALT's build), emulated KCS"},
}

// benchTable formats the results as markdown: one row per server, client
// and depth, then the headline ratio.
func benchTable(all []benchResult, n, rounds int) string {
	find := func(server, client string, depth int) *benchResult {
		for i := range all {
			if r := &all[i]; r.server == server && r.client == client && r.depth == depth {
				return r
			}
		}
		return nil
	}
	per := func(v float64, r *benchResult) string {
		if v < 0 || r.server == "kernel" {
			return "–"
		}
		return fmt.Sprintf("%.1f", v/float64(r.total))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nGet Device ID round trips, QEMU ipmi-bmc-sim + isa-ipmi-kcs, TCG, %d requests per row in %d interleaved rounds "+
		"(rates and percentiles: the rounds' median; the servers' counters per round trip include 50 warm-up requests per round):\n\n", n, rounds)
	b.WriteString("| server | client | depth | req/s | p50 (µs) | p99 (µs) | req/s vs kernel | p50 vs reference | server CPU (µs) | CPU vs reference | guest idle (µs) | CUSE requests | reads | writes | notifies | context switches (voluntary + involuntary) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, client := range []string{"c", "go"} {
		for _, d := range benchDepths {
			for _, s := range benchServers {
				r := find(s.key, client, d)
				if r == nil {
					continue
				}
				vsK, vsRef, cpu, cpuRef, idle := "–", "–", "–", "–", "–"
				if s.key != "kernel" && r.total > 0 {
					cpu = fmt.Sprintf("%.0f", r.cpuPerTrip()/1e3)
					idle = fmt.Sprintf("%.0f", r.idleMs*1e3/float64(r.total))
					if ref := find("ref", client, d); ref != nil && ref.cpuPerTrip() > 0 {
						cpuRef = fmt.Sprintf("%.2f×", r.cpuPerTrip()/ref.cpuPerTrip())
					}
				}
				if k := find("kernel", client, d); k != nil && k.rate > 0 {
					vsK = fmt.Sprintf("%.3f", r.rate/k.rate)
				}
				if ref := find("ref", client, d); ref != nil && ref.p50us > 0 && s.key != "kernel" {
					vsRef = fmt.Sprintf("%.2f×", r.p50us/ref.p50us)
				}
				cname := map[string]string{"c": "C", "go": "Go"}[client]
				fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s + %s |\n",
					s.name, cname, d, r.rate, r.p50us, r.p99us, vsK, vsRef, cpu, cpuRef, idle,
					per(r.cuseReqs, r), per(r.syscr, r), per(r.syscw, r), per(r.notifies, r), per(r.ctx, r), per(r.nvctx, r))
			}
		}
	}
	if k, ref := find("kcs", "c", 1), find("ref", "c", 1); k != nil && ref != nil && ref.p50us > 0 {
		fmt.Fprintf(&b, "\nHeadline: ipmi-cuse on the emulated KCS, C client, depth 1: p50 %.0f µs = %.2f× the reference server's %.0f µs (goal 1.3×).\n",
			k.p50us, k.p50us/ref.p50us, ref.p50us)
		if kc, rc := k.cpuPerTrip(), ref.cpuPerTrip(); k.total > 0 && rc > 0 {
			fmt.Fprintf(&b, "Server CPU time per round trip: %.0f µs = %.2f× the reference's %.0f µs.\n", kc/1e3, kc/rc, rc/1e3)
		}
	}
	b.WriteString(syscallTable(all))
	return b.String()
}

// microTable formats ipmiprobe micro's pieces, kernel against ipmi-cuse.
func microTable(micro map[testbed.Mode]map[string]string) string {
	var b strings.Builder
	b.WriteString("\nThe pieces of a round trip (ipmiprobe micro, 200 calls each, average µs per call):\n\n")
	b.WriteString("| piece | kernel (µs) | shim (µs) |\n|---|---|---|\n")
	for _, p := range microPieces {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", p, micro[testbed.KernelMode][p], micro[testbed.ShimMode][p])
	}
	return b.String()
}

// microRe matches ipmiprobe micro's lines; microPieces is their order.
var (
	microRe     = regexp.MustCompile(`(?m)^micro (\S+) avg_us=([0-9.]+)$`)
	microPieces = []string{"get_timing_parms", "receive_empty", "poll_empty", "send_only", "round_trip"}
)

// TestRoundRatios checks the round-by-round ratios against the reference:
// results pair up by round, in the order benchsrv.sh prints them.
func TestRoundRatios(t *testing.T) {
	r := func(server, client string, depth int, p50 float64) benchResult {
		return benchResult{server: server, client: client, depth: depth, p50us: p50}
	}
	tests := []struct {
		name string
		all  []benchResult
		want []string
	}{
		{"three rounds", []benchResult{
			r("ref", "c", 1, 100), r("sim", "c", 1, 150), r("kcs", "c", 1, 120),
			r("ref", "c", 1, 400), r("sim", "c", 1, 400), r("kcs", "c", 1, 1000),
			r("ref", "c", 1, 200), r("sim", "c", 1, 300), r("kcs", "c", 1, 260),
		}, []string{
			"- ipmi-cuse --bmc sim, C client, depth 1: 1.50 1.00 1.50; median 1.50×; best round against best round 1.50×",
			"- ipmi-cuse, emulated KCS, C client, depth 1: 1.20 2.50 1.30; median 1.30×; best round against best round 1.20×",
		}},
		{"no reference", []benchResult{r("kcs", "go", 8, 100)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := roundRatios(tt.all)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			if tt.want == nil && strings.Contains(got, "\n- ") {
				t.Errorf("ratios without a reference:\n%s", got)
			}
		})
	}
}

// syscallNames are the system calls syscallTable gives a column of their
// own, in order; the rest are summed as "other".
var syscallNames = []string{"pagefaults", "read", "write", "futex", "sched_yield", "epoll_pwait", "nanosleep", "clock_gettime", "rt_sigprocmask", "rt_sigreturn", "tgkill", "madvise", "ioperm", "iopl"}

// syscallTable formats the servers' system calls per round trip that perf
// stat counted (IPMI_CUSE_BENCH_PERF=1), or "" when none were.
func syscallTable(all []benchResult) string {
	var b strings.Builder
	for _, s := range benchServers {
		for i := range all {
			r := &all[i]
			if r.server != s.key || r.syscalls == nil || r.sysTotal == 0 {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("\nThe servers' system calls (and page faults) per round trip (perf stat -p, C client, depth 1, every round but the first and the last):\n\n| server | all | ")
				b.WriteString(strings.Join(syscallNames, " | "))
				b.WriteString(" | other |\n|---|---|")
				b.WriteString(strings.Repeat("---|", len(syscallNames)+1))
				b.WriteString("\n")
			}
			per := func(v float64) string { return fmt.Sprintf("%.1f", v/float64(r.sysTotal)) }
			fmt.Fprintf(&b, "| %s | %s |", s.name, per(r.syscalls["all"]))
			other := r.syscalls["all"]
			for _, n := range syscallNames {
				if n != "pagefaults" {
					other -= r.syscalls[n]
				}
				fmt.Fprintf(&b, " %s |", per(r.syscalls[n]))
			}
			fmt.Fprintf(&b, " %s |\n", per(other))
		}
	}
	return b.String()
}

// perfReportRe matches the perf report sections benchsrv.sh prints in perf
// mode.
var perfReportRe = regexp.MustCompile(`(?s)perfreport (\S+) begin\n(.*?)perfreport (\S+) end\n`)

// logPerfReports logs the perf report sections in out.
func logPerfReports(t *testing.T, out []byte) {
	t.Helper()
	for _, m := range perfReportRe.FindAllSubmatch(out, -1) {
		t.Logf("perf record -e cpu-clock -g of %s, C client, depth 1, last round (self; then with children):\n%s", m[1], m[2])
	}
	for _, m := range regexp.MustCompile(`(?m)^clocksource .*$`).FindAll(out, 1) {
		t.Logf("guest %s", m)
	}
}

// perfBins returns the host's perf (Debian's linux-perf) with its shared
// libraries, as guest paths to host files, for IPMI_CUSE_BENCH_PERF=1.
func perfBins(t *testing.T) map[string]string {
	t.Helper()
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Fatalf("IPMI_CUSE_BENCH_PERF=1 needs perf on the host (apt-get install linux-perf): %v", err)
	}
	out, err := exec.Command("ldd", perf).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", perf, err)
	}
	bins := map[string]string{"/usr/bin/perf": perf}
	for _, m := range regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`).FindAllStringSubmatch(string(out), -1) {
		real, err := filepath.EvalSymlinks(m[1])
		if err != nil {
			t.Fatal(err)
		}
		bins[m[1]] = real
	}
	return bins
}

// TestParseBenchSrv checks that benchsrv.sh's counters, perf stat's system
// calls included, reach the table per round trip.
func TestParseBenchSrv(t *testing.T) {
	line := func(server, extra string) string {
		return "bench depth=1 n=90 errors=0 elapsed_ms=1.0 req_per_s=500 p50_us=2000 p99_us=3000 server=" + server +
			" client=c total=100 syscr=600 syscw=700 ctxsw=30 nvcsw=570 cpu_ns=85000000 idle_ms=20 round=1 " + extra + "\n"
	}
	tests := []struct {
		name  string
		out   string
		want  []string
		avoid []string
	}{
		{"counters", line("ref", "requests=600 notifies=100"), []string{
			"| reference C CUSE server (canned reply) | C | 1 | 500 | 2000 | 3000 | – | 1.00× | 850 | 1.00× | 200 | 6.0 | 6.0 | 7.0 | 1.0 | 0.3 + 5.7 |",
		}, []string{"system calls per round trip"}},
		{"system calls", line("ref", "requests=600 sys_all=1500 sys_read=600 sys_write=700") +
			line("kcs", "cuse_requests=600 sys_all=1800 sys_pagefaults=30 sys_read=610 sys_write=700 sys_futex=40 sys_nanosleep=50"), []string{
			"| reference C CUSE server (canned reply) | 15.0 | 0.0 | 6.0 | 7.0 | 0.0 |",
			"| ipmi-cuse, emulated KCS | 18.0 | 0.3 | 6.1 | 7.0 | 0.4 | 0.0 | 0.0 | 0.5 |",
			"Server CPU time per round trip: 850 µs = 1.00× the reference's 850 µs.",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := parseBenchSrv([]byte(tt.out))
			if err != nil {
				t.Fatal(err)
			}
			got := benchTable(mergeRounds(rs), 90, 1)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, a := range tt.avoid {
				if strings.Contains(got, a) {
					t.Errorf("unexpected %q in\n%s", a, got)
				}
			}
		})
	}
}
