package metrics_test

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/metrics"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scrape gathers reg into series name{label="v",...} → value; histograms
// give name_count and name_sum.
func scrape(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName()
			lbl := ""
			if len(ls) > 0 {
				lbl = "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key+lbl] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key+lbl] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+"_count"+lbl] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"+lbl] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// rig is an engine on the KCS host state machine over the simulated BMC,
// with a registry over them.
type rig struct {
	bmc    *kcsbmc.BMC
	host   *kcs.Host
	engine *sched.Engine
	reg    *prometheus.Registry
}

func newRig(t testing.TB) *rig {
	// The BMC's clock stands still: the watchdog countdown read back does
	// not depend on how fast a loaded machine runs the steps.
	port := kcsbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet(), Clock: bmcsim.NewManualClock(time.Now())}))
	host := kcs.New(port, kcs.Config{WaitTimeout: 20 * time.Millisecond, TransactionTimeout: 100 * time.Millisecond, Logger: quiet()})
	e := sched.New(host, sched.Config{ProbeInterval: 10 * time.Millisecond, Logger: quiet()})
	t.Cleanup(func() { e.Close() })
	reg := metrics.Registry(metrics.New(metrics.Sources{Interfaces: []metrics.Interface{{Device: "ipmi0", Engine: e, KCS: host}}}), buildinfo.Read())
	return &rig{bmc: port, host: host, engine: e, reg: reg}
}

// do runs one request through the engine and waits for it.
func (r *rig) do(t testing.TB, lane sched.Lane, owner sched.Owner, deadline time.Time, msg ...byte) *sched.Request {
	t.Helper()
	done := make(chan *sched.Request, 1)
	req := &sched.Request{Owner: owner, Lane: lane, Deadline: deadline, Msg: msg, Resp: make([]byte, 0, 300),
		Done: func(r *sched.Request) { done <- r }}
	if err := r.engine.Submit(req); err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case d := <-done:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("request never completed")
	}
	return nil
}

func soon() time.Time { return time.Now().Add(5 * time.Second) }

const (
	normalOK   = `ipmi_cuse_requests_total{completion_code="0x00",device="ipmi0",lane="normal"}`
	priorityOK = `ipmi_cuse_requests_total{completion_code="0x00",device="ipmi0",lane="priority"}`
)

// TestCountersMoveOnTheirEvents runs, one after the other, the events each
// engine and KCS metric counts, and checks that exactly the expected series
// moved by the expected amount (at least, for the few a fault moves by a
// count that depends on polling: marked min).
func TestCountersMoveOnTheirEvents(t *testing.T) {
	r := newRig(t)
	type want struct {
		series string
		delta  float64
		min    bool // delta is a lower bound
	}
	steps := []struct {
		name  string
		event func(t *testing.T)
		want  []want
	}{
		{"get device id", func(t *testing.T) { r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01) }, []want{
			{normalOK, 1, false},
			{`ipmi_cuse_request_queue_seconds_count{device="ipmi0",lane="normal"}`, 1, false},
			{`ipmi_cuse_request_bmc_seconds_count{device="ipmi0",lane="normal"}`, 1, false},
			{`ipmi_cuse_kcs_transactions_total{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_kcs_status_reads_total{device="ipmi0"}`, 1, true},
		}},
		{"unknown command", func(t *testing.T) { r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x7f) }, []want{
			{`ipmi_cuse_requests_total{completion_code="0xc1",device="ipmi0",lane="normal"}`, 1, false},
			{`ipmi_cuse_kcs_transactions_total{device="ipmi0"}`, 1, false},
		}},
		{"set watchdog", func(t *testing.T) {
			// SMS/OS, don't stop, no action, no pretimeout, 10.0 s.
			r.do(t, sched.LanePriority, 1, soon(), 0x06<<2, 0x24, 0x44, 0x00, 0x00, 0x00, 100, 0)
		}, []want{
			{priorityOK, 1, false},
			{`ipmi_cuse_request_bmc_seconds_count{device="ipmi0",lane="priority"}`, 1, false},
			{`ipmi_cuse_watchdog_sets_total{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_watchdog_timeout_seconds{device="ipmi0"}`, 10, false}, // absent before: counts from 0
		}},
		{"reset watchdog", func(t *testing.T) { r.do(t, sched.LanePriority, 1, soon(), 0x06<<2, 0x22) }, []want{
			{priorityOK, 1, false},
			{`ipmi_cuse_watchdog_pats_total{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_watchdog_running{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_watchdog_last_pat_timestamp_seconds{device="ipmi0"}`, float64(time.Now().Unix()), true},
		}},
		{"get watchdog", func(t *testing.T) { r.do(t, sched.LanePriority, 1, soon(), 0x06<<2, 0x25) }, []want{
			{priorityOK, 1, false},
			{`ipmi_cuse_watchdog_remaining_seconds{device="ipmi0"}`, 10, false}, // the BMC's clock stands still
			{`ipmi_cuse_watchdog_remaining_read_timestamp_seconds{device="ipmi0"}`, float64(time.Now().Unix()), true},
		}},
		{"expired in the queue", func(t *testing.T) {
			req := r.do(t, sched.LaneNormal, 10, time.Now().Add(-time.Second), 0x06<<2, 0x01)
			if req.Err == nil {
				t.Fatal("a request past its deadline reached the BMC")
			}
		}, []want{
			{`ipmi_cuse_requests_expired_total{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_requests_total{completion_code="0xc3",device="ipmi0",lane="normal"}`, 1, false},
			{`ipmi_cuse_request_queue_seconds_count{device="ipmi0",lane="normal"}`, 1, false},
		}},
		{"slow BMC sleeps", func(t *testing.T) {
			r.bmc.SetMessageLatency(5 * time.Millisecond)
			defer r.bmc.SetMessageLatency(0)
			r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01)
		}, []want{
			{normalOK, 1, false},
			{`ipmi_cuse_kcs_sleeps_total{device="ipmi0"}`, 1, true},
			{`ipmi_cuse_kcs_sleep_seconds_total{device="ipmi0"}`, 1e-9, true}, // moves; how much depends on the spin before sleeping
		}},
		{"BMC error recovered", func(t *testing.T) {
			r.bmc.FailWrites(0x01, 1) // one aborted WRITE_START, then fine
			r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01)
		}, []want{
			{normalOK, 1, false},
			{`ipmi_cuse_kcs_recoveries_total{device="ipmi0"}`, 1, true},
			{`ipmi_cuse_kcs_retries_total{device="ipmi0"}`, 1, true},
		}},
		{"BMC silent: timeouts, down, fail fast", func(t *testing.T) {
			r.bmc.Silence(time.Time{})
			for range 3 {
				r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01)
			}
			if req := r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01); req.Err == nil {
				t.Fatal("a request succeeded while the BMC was silent")
			}
		}, []want{
			{`ipmi_cuse_requests_total{completion_code="0xc3",device="ipmi0",lane="normal"}`, 3, false},
			{`ipmi_cuse_requests_total{completion_code="0xff",device="ipmi0",lane="normal"}`, 1, false},
			{`ipmi_cuse_kcs_errors_total{device="ipmi0",kind="timeout"}`, 3, true}, // probes time out too
			{`ipmi_cuse_kcs_wait_timeouts_total{device="ipmi0",flag="ibf"}`, 1, true},
			{`ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="down"}`, 1, false},
			{`ipmi_cuse_bmc_up{device="ipmi0"}`, -1, false},
			{`ipmi_cuse_bmc_consecutive_timeouts{device="ipmi0"}`, 3, true},
			{`ipmi_cuse_requests_failed_fast_total{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_kcs_transactions_total{device="ipmi0"}`, 3, true},
		}},
		{"BMC back", func(t *testing.T) {
			r.bmc.ClearFaults()
			deadline := time.Now().Add(10 * time.Second)
			for !r.engine.Stats().Healthy {
				if time.Now().After(deadline) {
					t.Fatal("the BMC never came back")
				}
				time.Sleep(5 * time.Millisecond)
			}
		}, []want{
			{`ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="up"}`, 1, false},
			{`ipmi_cuse_bmc_up{device="ipmi0"}`, 1, false},
			{`ipmi_cuse_bmc_probes_total{device="ipmi0"}`, 1, true},
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := scrape(t, r.reg)
			st.event(t)
			after := scrape(t, r.reg)
			checked := map[string]bool{}
			for _, w := range st.want {
				checked[w.series] = true
				if _, ok := after[w.series]; !ok {
					t.Errorf("%s: absent after the event", w.series)
					continue
				}
				d := after[w.series] - before[w.series]
				if w.min && d < w.delta || !w.min && math.Abs(d-w.delta) > 1e-9 {
					t.Errorf("%s moved by %v, want %v%s", w.series, d, w.delta, map[bool]string{true: " or more"}[w.min])
				}
			}
			// Nothing else counted this step's event as its own.
			for _, s := range []string{normalOK, priorityOK, `ipmi_cuse_requests_expired_total{device="ipmi0"}`, `ipmi_cuse_requests_failed_fast_total{device="ipmi0"}`,
				`ipmi_cuse_watchdog_pats_total{device="ipmi0"}`, `ipmi_cuse_watchdog_sets_total{device="ipmi0"}`, `ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="down"}`} {
				if !checked[s] && after[s] != before[s] {
					t.Errorf("%s moved by %v on an event that is not its own", s, after[s]-before[s])
				}
			}
		})
	}
}

// fakeSources return fixed stats, so each field's series can be checked.
type fakeHandler msghandler.Stats

func (f fakeHandler) Stats() msghandler.Stats { return msghandler.Stats(f) }

type fakeWatchdog watchdog.Stats

func (f fakeWatchdog) Stats() watchdog.Stats { return watchdog.Stats(f) }

type fakeDevice cuse.Stats

func (f fakeDevice) Stats() cuse.Stats { return cuse.Stats(f) }

type fakeEngine struct {
	st sched.Stats
	ob sched.Observations
}

func (f fakeEngine) Stats() sched.Stats               { return f.st }
func (f fakeEngine) Observations() sched.Observations { return f.ob }

// TestSourceFieldsMapToSeries gives every counted field of the message
// handler, watchdog and CUSE stats a distinct value and checks it lands in
// its series.
func TestSourceFieldsMapToSeries(t *testing.T) {
	eng := fakeEngine{st: sched.Stats{CompletedNormal: 6, CompletedPriority: 4, QueuedNormal: 7, QueuedPriority: 2, Healthy: true}}
	eng.ob.Watchdog = sched.WatchdogObservations{Timeout: -1, Remaining: -1, Running: -1}
	src := metrics.Sources{
		Interfaces: []metrics.Interface{{Device: "ipmi0", Engine: eng,
			Handler: fakeHandler{Bridged: 1, Retransmits: 2, Timeouts: 3, Replies: 4, IncomingCmds: 5, AutoReplies: 6,
				Events: 7, EventsDropped: 8, Pretimeouts: 9}}},
		Watchdog: fakeWatchdog{Failures: 11, Rearms: 12},
		Devices: map[string]metrics.DeviceSource{
			"ipmi0":    fakeDevice{Requests: map[string]uint64{"IOCTL": 30, "POLL": 10}, OpenFiles: 3},
			"watchdog": fakeDevice{Requests: map[string]uint64{"WRITE": 5}, OpenFiles: 1},
		},
	}
	got := scrape(t, metrics.Registry(metrics.New(src), buildinfo.BuildInfo{Version: "v1", Revision: "abc", GoVersion: "go"}))
	want := map[string]float64{
		`ipmi_cuse_bridged_requests_total{device="ipmi0"}`:                 1,
		`ipmi_cuse_bridged_retries_total{device="ipmi0"}`:                  2,
		`ipmi_cuse_bridged_timeouts_total{device="ipmi0"}`:                 3,
		`ipmi_cuse_bridged_replies_total{device="ipmi0"}`:                  4,
		`ipmi_cuse_incoming_commands_total{device="ipmi0"}`:                5,
		`ipmi_cuse_incoming_commands_auto_replied_total{device="ipmi0"}`:   6,
		`ipmi_cuse_events_total{device="ipmi0"}`:                           7,
		`ipmi_cuse_events_dropped_total{device="ipmi0"}`:                   8,
		`ipmi_cuse_watchdog_pretimeouts_total{device="ipmi0"}`:             9,
		"ipmi_cuse_watchdog_heartbeat_failures_total":                      11,
		"ipmi_cuse_watchdog_rearms_total":                                  12,
		`ipmi_cuse_open_files{device="ipmi0"}`:                             3,
		`ipmi_cuse_open_files{device="watchdog"}`:                          1,
		`ipmi_cuse_cuse_requests_total{device="ipmi0",opcode="IOCTL"}`:     30,
		`ipmi_cuse_cuse_requests_total{device="ipmi0",opcode="POLL"}`:      10,
		`ipmi_cuse_cuse_requests_total{device="watchdog",opcode="WRITE"}`:  5,
		`ipmi_cuse_cuse_requests_per_ipmi_request{device="ipmi0"}`:         4, // 40 / (6+4)
		`ipmi_cuse_queue_depth{device="ipmi0",lane="normal"}`:              7,
		`ipmi_cuse_queue_depth{device="ipmi0",lane="priority"}`:            2,
		`ipmi_cuse_bmc_up{device="ipmi0"}`:                                 1,
		`ipmi_cuse_build_info{goversion="go",revision="abc",version="v1"}`: 1,
	}
	for s, v := range want {
		if g, ok := got[s]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", s, g, ok, v)
		}
	}
	for _, absent := range []string{`ipmi_cuse_watchdog_timeout_seconds{device="ipmi0"}`, `ipmi_cuse_watchdog_remaining_seconds{device="ipmi0"}`,
		`ipmi_cuse_watchdog_running{device="ipmi0"}`, `ipmi_cuse_watchdog_last_pat_timestamp_seconds{device="ipmi0"}`} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s present before anything was seen", absent)
		}
	}
}

// TestLint runs client_golang's metric linter over every family.
func TestLint(t *testing.T) {
	r := newRig(t)
	r.do(t, sched.LaneNormal, 10, soon(), 0x06<<2, 0x01)
	problems, err := testutil.GatherAndLint(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

type fakeBT bt.Stats

func (f fakeBT) Stats() bt.Stats { return bt.Stats(f) }

type fakeSSIF ssif.Stats

func (f fakeSSIF) Stats() ssif.Stats { return ssif.Stats(f) }

// TestEveryInterface: with several interfaces each has its own series,
// labelled with its device, and the BT and SSIF host counters land in
// theirs; one interface's counts never show in another's.
func TestEveryInterface(t *testing.T) {
	eng := func(normal uint64, healthy bool) fakeEngine {
		e := fakeEngine{st: sched.Stats{CompletedNormal: normal, Healthy: healthy}}
		e.ob.Watchdog = sched.WatchdogObservations{Timeout: -1, Remaining: -1, Running: -1}
		e.ob.Lanes[0].ByCC[0] = normal
		return e
	}
	src := metrics.Sources{
		Interfaces: []metrics.Interface{
			{Device: "ipmi0", Engine: eng(10, true), Handler: fakeHandler{Events: 1}},
			{Device: "ipmi1", Engine: eng(20, false), Handler: fakeHandler{Events: 2},
				BT: fakeBT{Transactions: 21, Failures: 22, Retries: 23, Timeouts: 24, Stale: 25, BusyRefused: 26, Sleeps: 27}},
			{Device: "ipmi2", Engine: eng(30, true), Handler: fakeHandler{Events: 3},
				SSIF: fakeSSIF{Transactions: 31, Failures: 32, Timeouts: 33, WriteRetries: 34, ReadRetries: 35, WriteParts: 36, ReadParts: 37, MultiRestarts: 38}},
		},
		Devices: map[string]metrics.DeviceSource{
			"ipmi1": fakeDevice{Requests: map[string]uint64{"IOCTL": 60}},
			"ipmi2": fakeDevice{Requests: map[string]uint64{"IOCTL": 90}},
		},
	}
	got := scrape(t, metrics.Registry(metrics.New(src), buildinfo.BuildInfo{}))
	want := map[string]float64{
		`ipmi_cuse_requests_total{completion_code="0x00",device="ipmi0",lane="normal"}`: 10,
		`ipmi_cuse_requests_total{completion_code="0x00",device="ipmi1",lane="normal"}`: 20,
		`ipmi_cuse_requests_total{completion_code="0x00",device="ipmi2",lane="normal"}`: 30,
		`ipmi_cuse_bmc_up{device="ipmi0"}`:                                              1,
		`ipmi_cuse_bmc_up{device="ipmi1"}`:                                              0,
		`ipmi_cuse_events_total{device="ipmi0"}`:                                        1,
		`ipmi_cuse_events_total{device="ipmi1"}`:                                        2,
		`ipmi_cuse_events_total{device="ipmi2"}`:                                        3,
		`ipmi_cuse_bt_transactions_total{device="ipmi1"}`:                               21,
		`ipmi_cuse_bt_failures_total{device="ipmi1"}`:                                   22,
		`ipmi_cuse_bt_retries_total{device="ipmi1"}`:                                    23,
		`ipmi_cuse_bt_timeouts_total{device="ipmi1"}`:                                   24,
		`ipmi_cuse_bt_stale_responses_total{device="ipmi1"}`:                            25,
		`ipmi_cuse_bt_busy_refused_total{device="ipmi1"}`:                               26,
		`ipmi_cuse_bt_sleeps_total{device="ipmi1"}`:                                     27,
		`ipmi_cuse_ssif_transactions_total{device="ipmi2"}`:                             31,
		`ipmi_cuse_ssif_failures_total{device="ipmi2"}`:                                 32,
		`ipmi_cuse_ssif_timeouts_total{device="ipmi2"}`:                                 33,
		`ipmi_cuse_ssif_write_retries_total{device="ipmi2"}`:                            34,
		`ipmi_cuse_ssif_read_retries_total{device="ipmi2"}`:                             35,
		`ipmi_cuse_ssif_write_parts_total{device="ipmi2"}`:                              36,
		`ipmi_cuse_ssif_read_parts_total{device="ipmi2"}`:                               37,
		`ipmi_cuse_ssif_multipart_restarts_total{device="ipmi2"}`:                       38,
		`ipmi_cuse_cuse_requests_per_ipmi_request{device="ipmi1"}`:                      3,
		`ipmi_cuse_cuse_requests_per_ipmi_request{device="ipmi2"}`:                      3,
	}
	for s, v := range want {
		if g, ok := got[s]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", s, g, ok, v)
		}
	}
	for s := range got {
		if strings.Contains(s, "_bt_") && !strings.Contains(s, `device="ipmi1"`) ||
			strings.Contains(s, "_ssif_") && !strings.Contains(s, `device="ipmi2"`) ||
			strings.Contains(s, "_kcs_") {
			t.Errorf("%s: a host counter on an interface without that host", s)
		}
	}
	if _, ok := got[`ipmi_cuse_cuse_requests_per_ipmi_request{device="ipmi0"}`]; ok {
		t.Error("requests per IPMI request for ipmi0, which has no CUSE device here")
	}
}
