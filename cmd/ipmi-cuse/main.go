// Command ipmi-cuse serves /dev/ipmi0 from userspace: the Linux IPMI device
// ABI (the ioctls of ipmi_devintf) through CUSE, with the BMC's KCS system
// interface driven by one engine goroutine that gives watchdog requests
// priority and bounds every wait on the BMC.
//
// # Least privilege
//
// The daemon needs root only to set up: open /dev/cuse and send CUSE_INIT,
// set the device nodes' mode and owner, gain port access (iopl, or open
// /dev/port), open /dev/i2c-N, and open its listeners. Once every device
// is ready it drops everything (package privdrop): on every thread, the
// engine's locked one included, the bounding, permitted, effective,
// inheritable and ambient capability sets are emptied and no_new_privs is
// set, after switching to --user if given. A bug reachable from a client's
// ioctl then cannot open a root-only file, load a module, change the
// network or regain a capability through exec. This needs a binary built
// without cgo (make build, the Debian package); --keep-privileges skips it.
//
// Port access survives the drop twice over. This process keeps the iopl
// level its threads got before the drop (kcs raises it on every thread at
// open; threads started later inherit it; capabilities gate the iopl call,
// not the level a thread holds), or its open /dev/port descriptor.
// An upgrade on SIGHUP starts a new process that has no capabilities and
// cannot call iopl or open /dev/port: everything it needs must be
// inherited. So with in/out instructions the daemon also opens /dev/port
// before the drop and keeps it in the interface's Files (keepDevPort),
// beside the descriptors the interface already has (/dev/port with
// --port-io devport, /dev/i2c-N); the successor takes those, the /dev/cuse
// channels and the metrics listener, and reaches the ports through the
// inherited /dev/port (kcs.DevPortFromFile) instead of iopl; a successor
// given a /dev/port switches from --port-io ioport to devport itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/btbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
	"github.com/ipmi-cuse/ipmi-cuse/upgrade"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

const usageText = `Usage: ipmi-cuse [flags]

ipmi-cuse replaces the kernel's IPMI driver stack (ipmi_si, ipmi_msghandler,
ipmi_devintf) in userspace. It serves /dev/ipmi0 through CUSE with the
kernel's ioctl ABI, so ipmitool, freeipmi and other /dev/ipmi0 clients work
unchanged, and drives the BMC's system interface (KCS or BT over I/O ports,
SSIF over /dev/i2c-N) itself. One engine per interface owns the hardware;
watchdog requests (Set/Reset/Get Watchdog Timer) go ahead of application
requests, and every wait on the BMC has a deadline.

With no flags it finds the interfaces in the firmware's SMBIOS tables
(type 38) and serves each, numbered as the kernel numbers them (/dev/ipmi0,
/dev/ipmi1...: KCS and BT before SSIF); the watchdog and the metrics follow
the first; an upgrade (SIGHUP) and a restart carry every interface.
--interface picks one type, --device one interface, and --kcs-port,
--bt-port or --ssif-address (with --ssif-bus) give the address instead. It
needs root (I/O ports, /dev/i2c-N and /dev/cuse), the cuse module (modprobe
cuse; i2c-dev for SSIF), and the kernel's own IPMI driver unloaded
(modprobe -r ipmi_si ipmi_ssif ipmi_devintf).

Examples:
  ipmi-cuse                                   # autodetect, serve /dev/ipmi0 (and ipmi1... for more BMCs)
  ipmi-cuse --kcs-port 0xca2 --port-io devport
  ipmi-cuse --bt-port 0xe4                    # a BT interface at 0xe4
  ipmi-cuse --ssif-bus 0 --ssif-address 0x10  # an SSIF BMC on /dev/i2c-0
  ipmi-cuse --bmc sim --device ipmi9          # a simulated BMC, for testing tools

Flags:
`

// options are the daemon's settings, from the command line.
type options struct {
	bmc              string
	kcsPort          uint
	kcsSpacing       uint
	portIO           string
	device           string
	deviceMode       octalMode
	deviceGroup      string
	logLevel         slog.Level
	priorityWatchdog bool
	requestTimeout   time.Duration
	kcsWaitTimeout   time.Duration
	kcsTxTimeout     time.Duration
	probeInterval    time.Duration
	inlineMax        time.Duration

	deviceSet bool   // --device was given: serve one interface
	iface     string // --interface: "" (any), kcs, bt or ssif
	btPort    uint
	btSpacing uint
	ssifBus   int
	ssifAddr  uint

	watchdog           bool
	watchdogDevice     string
	watchdogTimeout    time.Duration
	watchdogPretimeout time.Duration
	watchdogAction     watchdog.Action
	watchdogPreAction  watchdog.PreAction
	watchdogNoWayOut   bool
	watchdogExec       string
	watchdogParams     watchdogParams

	// Operations (issue 12).
	version        bool
	metricsAddress string

	upgradeTimeout time.Duration
	user           string
	keepPrivileges bool
}

// parseFlags reads the command line. It returns flag.ErrHelp for --help.
func parseFlags(args []string, out io.Writer) (o options, err error) {
	fs := flag.NewFlagSet("ipmi-cuse", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageText)
		fs.PrintDefaults()
		fmt.Fprint(out, watchdogUsage)
	}
	fs.StringVar(&o.bmc, "bmc", "kcs", "the BMC to serve: `kcs` (the hardware's system interface, whatever its type; the name is kept for compatibility) or sim (an embedded simulated BMC behind a KCS or, with --interface bt, a BT interface)")
	fs.UintVar(&o.kcsPort, "kcs-port", 0, "KCS data register I/O `port` (status/command at port+spacing); 0 finds it in SMBIOS type 38")
	fs.UintVar(&o.kcsSpacing, "kcs-spacing", 1, "register `spacing` in bytes, used with --kcs-port")
	fs.StringVar(&o.iface, "interface", "", "system interface `type` to serve: kcs, bt or ssif; empty takes the first SMBIOS type 38 describes (--kcs-port, --bt-port and --ssif-address imply it)")
	fs.UintVar(&o.btPort, "bt-port", 0, "BT control register I/O `port` (buffer at port+spacing, interrupt mask at port+2*spacing); 0 finds it in SMBIOS type 38")
	fs.UintVar(&o.btSpacing, "bt-spacing", 1, "BT register `spacing` in bytes, used with --bt-port")
	fs.IntVar(&o.ssifBus, "ssif-bus", -1, "I2C adapter `number` N of an SSIF BMC (/dev/i2c-N); -1 tries every adapter, as ipmi_ssif does (SMBIOS does not name the bus)")
	fs.UintVar(&o.ssifAddr, "ssif-address", 0, "7-bit SMBus `address` of an SSIF BMC; 0 takes it from SMBIOS type 38")
	fs.StringVar(&o.portIO, "port-io", "ioport", "how to reach I/O ports: `ioport` (in/out instructions after iopl) or devport (/dev/port)")
	fs.StringVar(&o.device, "device", "ipmi0", "device `name`: the node is /dev/NAME; giving it serves one interface, without it every interface SMBIOS describes is served (the first as NAME, the others as ipmi1, ipmi2...)")
	o.deviceMode = 0o600
	fs.Var(&o.deviceMode, "device-mode", "permission `bits` of the device node, in octal (the kernel's node is 0600)")
	fs.StringVar(&o.deviceGroup, "device-group", "", "`group` (name or number) owning the device node; empty leaves root")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.BoolVar(&o.priorityWatchdog, "priority-watchdog-commands", true, "serve Set/Reset/Get Watchdog Timer from clients on the priority lane")
	fs.DurationVar(&o.requestTimeout, "request-timeout", ioctl.DefaultRequestTimeout, "how long a client request may wait for the BMC before it completes with a timeout")
	fs.DurationVar(&o.kcsWaitTimeout, "kcs-wait-timeout", kcs.DefaultWaitTimeout, "bound on one wait for the BMC (IBF/OBF) before error recovery")
	fs.DurationVar(&o.kcsTxTimeout, "kcs-transaction-timeout", kcs.DefaultTransactionTimeout, "bound on one whole KCS transaction, recovery included")
	fs.DurationVar(&o.probeInterval, "probe-interval", time.Second, "how often an unresponsive BMC is probed")
	fs.DurationVar(&o.inlineMax, "inline-max", 2*time.Millisecond, "an idle engine runs a client's request on the CUSE reader, before answering its SEND, while the last transaction took at most this `long`; after a slower one requests go through the engine")
	fs.BoolVar(&o.watchdog, "watchdog", false, "arm the BMC watchdog and pat it from the daemon (on the priority lane) while the daemon is healthy")
	fs.StringVar(&o.watchdogDevice, "watchdog-device", "", "also serve a /dev/watchdog-compatible device with this `name` (e.g. watchdog) for watchdog daemons; excludes --watchdog")
	o.watchdogTimeout = watchdog.DefaultTimeout
	fs.Var(seconds{&o.watchdogTimeout}, "watchdog-timeout", "BMC watchdog countdown, seconds or a duration (ipmi_watchdog's timeout)")
	fs.Var(seconds{&o.watchdogPretimeout}, "watchdog-pretimeout", "how long before expiry the BMC raises the pre-timeout interrupt (0: none; whole seconds) (ipmi_watchdog's pretimeout)")
	action := fs.String("watchdog-action", "reset", "what the BMC does at expiry: `reset`, power-off, power-cycle or none")
	preaction := fs.String("watchdog-preaction", "none", "pre-timeout interrupt: `none`, smi, nmi or msg-int (msg-int reaches the daemon, which logs it and runs --watchdog-pretimeout-exec)")
	fs.BoolVar(&o.watchdogNoWayOut, "watchdog-nowayout", false, "never stop the BMC watchdog once started (not on shutdown, not on a magic close)")
	fs.StringVar(&o.watchdogExec, "watchdog-pretimeout-exec", "", "shell `command` run on each watchdog pretimeout")
	checkWatchdogParams := addWatchdogParamFlags(fs, &o.watchdogParams)
	fs.BoolVar(&o.version, "version", false, "print the version and VCS revision, and exit")
	fs.StringVar(&o.metricsAddress, "metrics-address", "", "serve Prometheus metrics at /metrics on `HOST:PORT` or unix:PATH (a Unix socket); empty: no listener")
	fs.DurationVar(&o.upgradeTimeout, "upgrade-timeout", upgrade.DefaultTimeout, "on SIGHUP (systemctl reload) the binary on disk is started and handed the devices; if it does not say it serves within this `time`, this process serves on")
	fs.StringVar(&o.user, "user", "", "after set-up, switch to this `user` (name or uid; its primary group, no supplementary groups); every capability is dropped either way")
	fs.BoolVar(&o.keepPrivileges, "keep-privileges", false, "do not drop capabilities after set-up (for debugging; needed only by a binary built with cgo)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fs.Visit(func(f *flag.Flag) { o.deviceSet = o.deviceSet || f.Name == "device" })
	if err := checkWatchdogParams(); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level: %w", err)
	}
	switch o.bmc {
	case "kcs", "sim":
	default:
		return o, fmt.Errorf("--bmc must be kcs or sim, not %q", o.bmc)
	}
	switch o.portIO {
	case "ioport", "devport":
	default:
		return o, fmt.Errorf("--port-io must be ioport or devport, not %q", o.portIO)
	}
	if o.kcsPort > 0xFFFF {
		return o, fmt.Errorf("--kcs-port %#x is not an I/O port (0 to 0xffff)", o.kcsPort)
	}
	if o.kcsSpacing == 0 || o.kcsSpacing > 16 {
		return o, fmt.Errorf("--kcs-spacing %d out of range (1 to 16)", o.kcsSpacing)
	}
	if o.btPort > 0xFFFF {
		return o, fmt.Errorf("--bt-port %#x is not an I/O port (0 to 0xffff)", o.btPort)
	}
	if o.btSpacing == 0 || o.btSpacing > 16 {
		return o, fmt.Errorf("--bt-spacing %d out of range (1 to 16)", o.btSpacing)
	}
	if o.iface != "" {
		if _, err := sysif.ParseKind(o.iface); err != nil {
			return o, fmt.Errorf("--interface: %w", err)
		}
	}
	for _, f := range []struct {
		set  bool
		name string
		kind sysif.Kind
	}{{o.kcsPort != 0, "--kcs-port", sysif.KCS}, {o.btPort != 0, "--bt-port", sysif.BT},
		{o.ssifAddr != 0, "--ssif-address", sysif.SSIF}, {o.ssifBus >= 0, "--ssif-bus", sysif.SSIF}} {
		if !f.set {
			continue
		}
		if o.iface != "" && sysif.Kind(o.iface) != f.kind {
			return o, fmt.Errorf("%s gives a %s interface, but --interface is %s", f.name, f.kind, o.iface)
		}
		o.iface = string(f.kind)
	}
	if o.ssifAddr > 0x7F {
		return o, fmt.Errorf("--ssif-address %#x is not a 7-bit SMBus address (0x01 to 0x7f; SMBIOS's 8-bit form shifted right by one)", o.ssifAddr)
	}
	if o.ssifBus < -1 {
		return o, fmt.Errorf("--ssif-bus %d is not an I2C adapter number", o.ssifBus)
	}
	if o.bmc == "sim" && o.iface == string(sysif.SSIF) {
		return o, errors.New("--bmc sim serves a KCS or BT interface, not SSIF")
	}
	if o.device == "" || strings.ContainsAny(o.device, "/ \t\n\x00") {
		return o, fmt.Errorf("--device %q is not a device name", o.device)
	}
	if o.watchdogAction, err = watchdog.ParseAction(*action); err != nil {
		return o, fmt.Errorf("--watchdog-action: %w", err)
	}
	if o.watchdogPreAction, err = watchdog.ParsePreAction(*preaction); err != nil {
		return o, fmt.Errorf("--watchdog-preaction: %w", err)
	}
	if o.watchdog && o.watchdogDevice != "" {
		return o, errors.New("--watchdog and --watchdog-device drive the same BMC timer; choose one")
	}
	if o.watchdogDevice != "" && (o.watchdogDevice == o.device || strings.ContainsAny(o.watchdogDevice, "/ \t\n\x00")) {
		return o, fmt.Errorf("--watchdog-device %q is not a usable device name", o.watchdogDevice)
	}
	if o.requestTimeout <= 0 || o.kcsWaitTimeout <= 0 || o.kcsTxTimeout <= 0 || o.probeInterval <= 0 || o.upgradeTimeout <= 0 || o.inlineMax <= 0 {
		return o, errors.New("timeouts and intervals must be positive")
	}
	return o, nil
}

func main() {
	noteMain()
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipmi-cuse: %v\n", err)
		os.Exit(2)
	}
	if opts.version {
		fmt.Println(buildinfo.Read())
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stopProfile := startProfile(log)
	err = run(ctx, opts, log)
	stopProfile()
	if err != nil {
		log.Error("ipmi-cuse stopped", "err", err)
		os.Exit(1)
	}
}

// bmcCandidates lists the interfaces to try, in the kernel's order: the
// one an address flag gives, the embedded simulated BMC, or those SMBIOS
// type 38 describes (of --interface's type). all says whether every
// interface that answers is served (no --interface, --device or address
// flag) or only the first (see firstAnswering).
func bmcCandidates(o options) (cands []sysif.Interface, all bool, err error) {
	switch {
	case o.bmc == "sim":
		return []sysif.Interface{{Kind: sysif.Kind(o.iface), Bus: -1, Source: "--bmc sim"}}, false, nil
	case o.kcsPort != 0:
		return []sysif.Interface{{Kind: sysif.KCS, Base: uint16(o.kcsPort), Spacing: uint16(o.kcsSpacing), Bus: -1, Source: "--kcs-port"}}, false, nil
	case o.btPort != 0:
		return []sysif.Interface{{Kind: sysif.BT, Base: uint16(o.btPort), Spacing: uint16(o.btSpacing), Bus: -1, Source: "--bt-port"}}, false, nil
	case o.ssifAddr != 0:
		return []sysif.Interface{{Kind: sysif.SSIF, Bus: o.ssifBus, Addr: uint8(o.ssifAddr), Source: "--ssif-address"}}, false, nil
	}
	found, err := sysif.Discover()
	if err != nil {
		return nil, false, fmt.Errorf("finding the BMC's interface: %w (--kcs-port, --bt-port or --ssif-address give one)", err)
	}
	if found, err = sysif.Select(found, sysif.Kind(o.iface)); err != nil {
		return nil, false, fmt.Errorf("finding the BMC's interface: %w", err)
	}
	for i := range found {
		if found[i].Kind == sysif.SSIF && o.ssifBus >= 0 {
			found[i].Bus = o.ssifBus
		}
	}
	return found, o.iface == "" && !o.deviceSet, nil
}

// sysifOptions are the transports' settings from the flags.
func sysifOptions(o options, log *slog.Logger, devPort *os.File) sysif.Options {
	return sysif.Options{
		PortIO:  o.portIO,
		DevPort: devPort,
		KCS:     kcs.Config{WaitTimeout: o.kcsWaitTimeout, TransactionTimeout: o.kcsTxTimeout},
		BT:      bt.Config{TransactionTimeout: o.kcsTxTimeout},
		SSIF:    ssif.Config{TransactionTimeout: o.kcsTxTimeout},
		Logger:  log,
	}
}

// openSim returns the embedded simulated BMC behind a KCS or BT interface.
func openSim(o options, log *slog.Logger) *sysif.Opened {
	sim := bmcsim.New(bmcsim.Config{Logger: log})
	if o.iface == string(sysif.BT) {
		host := bt.New(btbmc.New(sim, btbmc.Config{}), bt.Config{TransactionTimeout: o.kcsTxTimeout, Logger: log})
		if _, err := host.Init(time.Now().Add(o.kcsTxTimeout)); err != nil {
			log.Warn("simulated BT BMC: capabilities", "err", err)
		}
		return &sysif.Opened{Interface: sysif.Interface{Kind: sysif.BT}, Transport: host, Attention: host.Attention, BT: host,
			What: "embedded simulated BMC (BT)"}
	}
	host := kcs.New(kcsbmc.New(sim), kcs.Config{WaitTimeout: o.kcsWaitTimeout, TransactionTimeout: o.kcsTxTimeout, Logger: log})
	return &sysif.Opened{Interface: sysif.Interface{Kind: sysif.KCS}, Transport: host, Attention: host.Attention, KCS: host,
		What: "embedded simulated BMC"}
}

// checkNoKernelDriver refuses to start while the kernel's IPMI system
// interface driver is loaded: it would drive the same KCS ports, and its
// /dev/ipmiN nodes collide with ours.
func checkNoKernelDriver(device string) error {
	// A loaded module has /sys/module/NAME/initstate, which the hardened
	// unit's ProcSubset=pid leaves readable where /proc/modules is hidden.
	for _, name := range []string{"ipmi_si", "ipmi_ssif"} {
		if _, err := os.Stat("/sys/module/" + name + "/initstate"); err == nil {
			return fmt.Errorf("the kernel's %s driver is loaded and owns the BMC interface; unload it first (modprobe -r ipmi_watchdog ipmi_devintf %s)", name, name)
		}
	}
	if _, err := os.Stat("/dev/" + device); err == nil {
		if _, err := os.Stat("/sys/class/ipmi/" + device); err == nil {
			return fmt.Errorf("/dev/%s belongs to the kernel's ipmi_devintf driver; unload it first (modprobe -r ipmi_devintf)", device)
		}
		return fmt.Errorf("/dev/%s already exists (another ipmi-cuse, or a stale node?); choose another --device or remove it", device)
	}
	return nil
}

// octalMode is a flag value for permission bits written in octal.
type octalMode uint32

// String prints the mode the way chmod takes it.
func (m *octalMode) String() string { return fmt.Sprintf("%04o", uint32(*m)) }

// Set parses an octal mode such as 0660 or 660.
func (m *octalMode) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("%q is not an octal permission mode from 0 to 0777", s)
	}
	*m = octalMode(v)
	return nil
}

// lookupGroup resolves --device-group to a gid; -1 means leave it.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("--device-group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}
