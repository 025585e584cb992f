// Package metrics exports ipmi-cuse's counters in the Prometheus text
// format. A Collector reads the counters the owning packages keep anyway
// (sched, kcs, bt, ssif, msghandler, watchdog, cuse: atomics updated where
// the event happens) at scrape time, so serving metrics adds nothing to the
// engine's hot path; a scrape takes only the short locks those packages'
// Stats methods take (the engine's queue lock to read two queue depths).
//
// Every family is prefixed ipmi_cuse_ and follows Prometheus conventions:
// base units, _total for counters, _seconds for durations. Each BMC
// interface served has its own series, labelled device="ipmi0",
// "ipmi1"...; only the daemon's own watchdog and the CUSE device families
// are not an interface's. Serve runs the /metrics endpoint on a TCP
// address or a Unix socket ("unix:PATH").
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// EngineSource is what the collector reads from the engine.
type EngineSource interface {
	Stats() sched.Stats
	Observations() sched.Observations
}

// KCSSource is what the collector reads from the KCS host.
type KCSSource interface{ Stats() kcs.Stats }

// BTSource is what the collector reads from the BT host.
type BTSource interface{ Stats() bt.Stats }

// SSIFSource is what the collector reads from the SSIF host.
type SSIFSource interface{ Stats() ssif.Stats }

// HandlerSource is what the collector reads from the message handler.
type HandlerSource interface{ Stats() msghandler.Stats }

// WatchdogSource is what the collector reads from the watchdog (the
// built-in patter or /dev/watchdog).
type WatchdogSource interface{ Stats() watchdog.Stats }

// DeviceSource is what the collector reads from a CUSE device server.
type DeviceSource interface{ Stats() cuse.Stats }

// Interface is one BMC interface's components: its engine, the host
// state machine behind it (one of KCS, BT, SSIF) and its message handler;
// nil ones are left out. Their series carry the label device=Device.
type Interface struct {
	// Device is the interface's IPMI device name (ipmi0, ipmi1...).
	Device  string
	Engine  EngineSource
	KCS     KCSSource
	BT      BTSource
	SSIF    SSIFSource
	Handler HandlerSource
}

// Sources are the components a Collector reads; nil ones are left out.
type Sources struct {
	// Interfaces are the BMC interfaces served, each with its own engine.
	Interfaces []Interface
	// Watchdog is the daemon's own watchdog (the built-in patter or
	// /dev/watchdog), on one of the interfaces.
	Watchdog WatchdogSource
	// Devices maps a device name (ipmi0, watchdog) to its CUSE server.
	// The CUSE requests of an interface's device are divided by its
	// engine's completed requests for
	// ipmi_cuse_cuse_requests_per_ipmi_request.
	Devices map[string]DeviceSource
}

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	src   Sources
	descs map[string]*prometheus.Desc
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("ipmi_cuse_"+name, help, labels, nil)
}

// family lists every metric family: name, help, labels.
var families = []struct {
	name, help string
	labels     []string
}{
	{"requests_total", "IPMI requests completed, by lane (normal, priority) and the completion code the client received (the BMC's, or 0xc3 for a timeout, 0xff for another failure).", []string{"lane", "completion_code"}},
	{"request_queue_seconds", "Time requests waited in the engine's queue before reaching the BMC (or before completing without it), by lane.", []string{"lane"}},
	{"request_bmc_seconds", "Time requests spent in a transaction with the BMC, by lane.", []string{"lane"}},
	{"queue_depth", "Requests waiting in the engine's queue now, by lane.", []string{"lane"}},
	{"requests_expired_total", "Requests whose deadline passed while queued (completed without touching the BMC).", nil},
	{"requests_failed_fast_total", "Normal-lane requests failed at once because the BMC was marked unresponsive.", nil},
	{"bmc_up", "1 while the BMC answers, 0 while it is marked unresponsive (after consecutive timeouts).", nil},
	{"bmc_health_transitions_total", "Changes of the BMC's health, by the state entered (down, up).", []string{"to"}},
	{"bmc_probes_total", "Get Device ID probes sent while the BMC was unresponsive.", nil},
	{"bmc_consecutive_timeouts", "The current run of transaction timeouts.", nil},
	{"kcs_transactions_total", "KCS transactions started.", nil},
	{"kcs_errors_total", "KCS transactions that failed, by kind (timeout, bmc_error, no_interface, truncated, protocol, request, other).", []string{"kind"}},
	{"kcs_recoveries_total", "KCS error recovery sequences (GET_STATUS/ABORT) run.", nil},
	{"kcs_retries_total", "KCS requests restarted after an error.", nil},
	{"kcs_wait_timeouts_total", "Waits on the KCS interface that timed out, by flag (ibf: the BMC did not take a byte; obf: it did not answer).", []string{"flag"}},
	{"kcs_status_reads_total", "KCS status register reads (polling).", nil},
	{"kcs_sleeps_total", "Sleeps between KCS status polls.", nil},
	{"kcs_sleep_seconds_total", "Time asked to sleep between KCS status polls.", nil},
	{"bt_transactions_total", "BT transactions started.", nil},
	{"bt_failures_total", "BT transactions that failed.", nil},
	{"bt_retries_total", "BT requests written again after a timeout.", nil},
	{"bt_timeouts_total", "BT attempts that timed out.", nil},
	{"bt_stale_responses_total", "BT responses drained or discarded (wrong sequence number, netfn or command).", nil},
	{"bt_busy_refused_total", "BT requests refused at once (0xc0) while the BMC stayed busy.", nil},
	{"bt_sleeps_total", "Sleeps between BT control register polls.", nil},
	{"ssif_transactions_total", "SSIF transactions started.", nil},
	{"ssif_failures_total", "SSIF transactions that failed.", nil},
	{"ssif_timeouts_total", "SSIF transactions that ran out of time or retries.", nil},
	{"ssif_write_retries_total", "SSIF request writes retried after the BMC NAKed them.", nil},
	{"ssif_read_retries_total", "SSIF response reads retried after the BMC NAKed them (response not ready).", nil},
	{"ssif_write_parts_total", "SSIF multi-part write parts.", nil},
	{"ssif_read_parts_total", "SSIF multi-part read parts.", nil},
	{"ssif_multipart_restarts_total", "SSIF multi-part reads restarted after a bad part.", nil},
	{"watchdog_pats_total", "Reset Watchdog Timer commands the BMC accepted, from any sender (clients of /dev/ipmi0, the built-in patter, /dev/watchdog).", nil},
	{"watchdog_sets_total", "Set Watchdog Timer commands the BMC accepted, from any sender.", nil},
	{"watchdog_last_pat_timestamp_seconds", "When the BMC watchdog's countdown was last restarted (Unix time); absent until the first pat.", nil},
	{"watchdog_timeout_seconds", "The BMC watchdog's initial countdown from the last Set or Get Watchdog Timer; absent until one is seen.", nil},
	{"watchdog_remaining_seconds", "The BMC watchdog's present countdown as last read with Get Watchdog Timer; absent until read.", nil},
	{"watchdog_remaining_read_timestamp_seconds", "When ipmi_cuse_watchdog_remaining_seconds was read (Unix time).", nil},
	{"watchdog_running", "1 if the BMC watchdog timer was last seen running, 0 stopped; absent until known.", nil},
	{"watchdog_pretimeouts_total", "BMC watchdog pretimeout interrupts seen.", nil},
	{"watchdog_heartbeat_failures_total", "Pats and re-arms of the daemon's watchdog (built-in patter or /dev/watchdog) that failed.", nil},
	{"watchdog_rearms_total", "Times the daemon's watchdog re-armed the timer after the BMC lost it (Reset answered 0x80).", nil},
	{"events_total", "Event messages read from the BMC's event buffer.", nil},
	{"events_dropped_total", "Events dropped because nobody listened and 25 were already waiting.", nil},
	{"bridged_requests_total", "IPMB/LAN requests bridged through Send Message.", nil},
	{"bridged_retries_total", "Bridged requests sent again after a timeout.", nil},
	{"bridged_timeouts_total", "Bridged requests that failed with 0xc3 after their retries.", nil},
	{"bridged_replies_total", "Bridged replies matched and delivered.", nil},
	{"incoming_commands_total", "Incoming commands delivered to a registered file.", nil},
	{"incoming_commands_auto_replied_total", "Incoming commands nobody registered, answered with 0xc1.", nil},
	{"open_files", "Files open on the device now, by device.", []string{"device"}},
	{"cuse_requests_total", "Requests read from the kernel's CUSE channel, by device and FUSE opcode.", []string{"device", "opcode"}},
	{"cuse_requests_per_ipmi_request", "CUSE requests on the IPMI device per IPMI request completed by the engine, since start (round trips cost this many kernel round trips each).", nil},
}

// daemonFamilies are the families of the daemon as a whole; every other
// family is an interface's, with the label device first.
var daemonFamilies = map[string]bool{
	"watchdog_heartbeat_failures_total": true,
	"watchdog_rearms_total":             true,
	"open_files":                        true,
	"cuse_requests_total":               true,
}

// New returns a Collector over src.
func New(src Sources) *Collector {
	c := &Collector{src: src, descs: map[string]*prometheus.Desc{}}
	for _, f := range families {
		labels := f.labels
		if !daemonFamilies[f.name] {
			labels = append([]string{"device"}, labels...)
		}
		c.descs[f.name] = desc(f.name, f.help, labels...)
	}
	return c
}

// Describe sends every family's descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- c.descs[f.name]
	}
}

var lanes = [2]string{"normal", "priority"}

// Collect reads the sources and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	completed := map[string]uint64{}
	for _, i := range c.src.Interfaces {
		completed[i.Device] = c.collectInterface(ch, i)
	}
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	if w := c.src.Watchdog; w != nil {
		st := w.Stats()
		counter("watchdog_heartbeat_failures_total", st.Failures)
		counter("watchdog_rearms_total", st.Rearms)
	}
	for name, d := range c.src.Devices {
		st := d.Stats()
		gauge("open_files", float64(st.OpenFiles), name)
		var total uint64
		for op, n := range st.Requests {
			counter("cuse_requests_total", n, name, op)
			total += n
		}
		if n, ok := completed[name]; ok && n > 0 {
			gauge("cuse_requests_per_ipmi_request", float64(total)/float64(n), name)
		}
	}
}

// collectInterface sends one interface's series and returns its engine's
// completed requests.
func (c *Collector) collectInterface(ch chan<- prometheus.Metric, i Interface) (completed uint64) {
	dev := i.Device
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), append([]string{dev}, labels...)...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, append([]string{dev}, labels...)...)
	}
	if e := i.Engine; e != nil {
		st, ob := e.Stats(), e.Observations()
		completed = st.CompletedNormal + st.CompletedPriority
		for l, lo := range ob.Lanes {
			for cc, n := range lo.ByCC {
				// A code never seen is left out (256 series per lane
				// otherwise), except success, which is always there.
				if n > 0 || cc == 0 {
					counter("requests_total", n, lanes[l], fmt.Sprintf("0x%02x", cc))
				}
			}
			c.histogram(ch, "request_queue_seconds", lo.Queued, dev, lanes[l])
			c.histogram(ch, "request_bmc_seconds", lo.AtBMC, dev, lanes[l])
		}
		gauge("queue_depth", float64(st.QueuedNormal), "normal")
		gauge("queue_depth", float64(st.QueuedPriority), "priority")
		counter("requests_expired_total", st.Expired)
		counter("requests_failed_fast_total", st.FailedFast)
		gauge("bmc_up", boolGauge(st.Healthy))
		counter("bmc_health_transitions_total", ob.HealthDown, "down")
		counter("bmc_health_transitions_total", ob.HealthUp, "up")
		counter("bmc_probes_total", st.Probes)
		gauge("bmc_consecutive_timeouts", float64(st.ConsecutiveTimeouts))
		w := ob.Watchdog
		counter("watchdog_pats_total", w.Pats)
		counter("watchdog_sets_total", w.Sets)
		if !w.LastPat.IsZero() {
			gauge("watchdog_last_pat_timestamp_seconds", unixSeconds(w.LastPat))
		}
		if w.Timeout >= 0 {
			gauge("watchdog_timeout_seconds", w.Timeout.Seconds())
		}
		if w.Remaining >= 0 {
			gauge("watchdog_remaining_seconds", w.Remaining.Seconds())
			gauge("watchdog_remaining_read_timestamp_seconds", unixSeconds(w.ReadAt))
		}
		if w.Running >= 0 {
			gauge("watchdog_running", float64(w.Running))
		}
	}
	if k := i.KCS; k != nil {
		st := k.Stats()
		counter("kcs_transactions_total", st.Transactions)
		for _, kind := range kcs.FailureKinds {
			counter("kcs_errors_total", st.FailuresByKind[kind], kind.String())
		}
		counter("kcs_recoveries_total", st.Recoveries)
		counter("kcs_retries_total", st.Retries)
		counter("kcs_wait_timeouts_total", st.WaitTimeoutsIBF, "ibf")
		counter("kcs_wait_timeouts_total", st.WaitTimeoutsOBF, "obf")
		counter("kcs_status_reads_total", st.StatusReads)
		counter("kcs_sleeps_total", st.Sleeps)
		ch <- prometheus.MustNewConstMetric(c.descs["kcs_sleep_seconds_total"], prometheus.CounterValue, st.SleepTime.Seconds(), dev)
	}
	if b := i.BT; b != nil {
		st := b.Stats()
		counter("bt_transactions_total", st.Transactions)
		counter("bt_failures_total", st.Failures)
		counter("bt_retries_total", st.Retries)
		counter("bt_timeouts_total", st.Timeouts)
		counter("bt_stale_responses_total", st.Stale)
		counter("bt_busy_refused_total", st.BusyRefused)
		counter("bt_sleeps_total", st.Sleeps)
	}
	if s := i.SSIF; s != nil {
		st := s.Stats()
		counter("ssif_transactions_total", st.Transactions)
		counter("ssif_failures_total", st.Failures)
		counter("ssif_timeouts_total", st.Timeouts)
		counter("ssif_write_retries_total", st.WriteRetries)
		counter("ssif_read_retries_total", st.ReadRetries)
		counter("ssif_write_parts_total", st.WriteParts)
		counter("ssif_read_parts_total", st.ReadParts)
		counter("ssif_multipart_restarts_total", st.MultiRestarts)
	}
	if h := i.Handler; h != nil {
		st := h.Stats()
		counter("watchdog_pretimeouts_total", st.Pretimeouts)
		counter("events_total", st.Events)
		counter("events_dropped_total", st.EventsDropped)
		counter("bridged_requests_total", st.Bridged)
		counter("bridged_retries_total", st.Retransmits)
		counter("bridged_timeouts_total", st.Timeouts)
		counter("bridged_replies_total", st.Replies)
		counter("incoming_commands_total", st.IncomingCmds)
		counter("incoming_commands_auto_replied_total", st.AutoReplies)
	}
	return completed
}

// histogram sends one engine histogram.
func (c *Collector) histogram(ch chan<- prometheus.Metric, name string, h sched.HistogramSnapshot, labels ...string) {
	buckets := make(map[float64]uint64, len(sched.LatencyBuckets))
	for i, b := range sched.LatencyBuckets {
		if i < len(h.Buckets) {
			buckets[b.Seconds()] = h.Buckets[i]
		} else {
			buckets[b.Seconds()] = h.Count
		}
	}
	ch <- prometheus.MustNewConstHistogram(c.descs[name], h.Count, h.Sum.Seconds(), buckets, labels...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
