package vmserial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
)

// Options tune a Server. The zero value is usable.
type Options struct {
	// Logger gets connection and protocol events. Nil means slog.Default().
	Logger *slog.Logger
	// AttentionInterval is how often the responder's Attention is polled
	// to tell QEMU about changes (it is also checked after every message).
	// Default 50 ms.
	AttentionInterval time.Duration
	// WriteTimeout bounds each write to QEMU. Default 5 s.
	WriteTimeout time.Duration
	// ForwardChassis makes chassis operations of the responder (Chassis
	// Control, watchdog expiry actions) act on the VM: power down → power
	// off, hard reset and power cycle → reset, soft off → graceful
	// shutdown, diagnostic interrupt → NMI, each only if QEMU announced
	// the capability. It needs a responder with OnChassisControl (as
	// *bmcsim.BMC has). Off by default, because a watchdog reset then
	// really resets the guest.
	ForwardChassis bool
}

// ChassisNotifier is implemented by responders that report chassis
// operations (*bmcsim.BMC does).
type ChassisNotifier interface {
	OnChassisControl(func(bmcsim.ChassisControl))
}

// Stats are the server's counters.
type Stats struct {
	Connections  uint64 // connections accepted
	Messages     uint64 // well-formed messages received
	Answered     uint64 // responses written (counted as the write starts)
	Silenced     uint64 // messages ignored because the responder was silent
	BadFrames    uint64 // malformed frames dropped
	Commands     uint64 // control commands received
	AttnSent     uint64 // ATN/ATN+IRQ commands sent
	NoAttnSent   uint64 // NOATTN commands sent
	Resets       uint64 // OpReset received (QEMU reset the VM)
	Forwarded    uint64 // chassis operations written to QEMU (ForwardChassis)
	Version      byte   // protocol version QEMU announced
	Capabilities byte   // capability bits QEMU announced
}

// Server serves one QEMU ipmi-bmc-extern connection at a time with a
// bmcsim.Responder. If the responder implements bmcsim.Faulty, each
// message waits ResponseDelay before its answer and gets none while Silent
// (QEMU then answers the guest 0xC3 after its 4 s timer). If it implements
// bmcsim.AttentionIRQer, attention is signalled with ATN+IRQ when the
// responder says so.
type Server struct {
	r    bmcsim.Responder
	opts Options
	log  *slog.Logger

	connections, messages, answered, silenced, badFrames atomic.Uint64
	commands, attnSent, noAttnSent, resets, forwarded    atomic.Uint64
	version, caps                                        atomic.Uint32
	cur                                                  atomic.Pointer[conn] // connection being served
}

// NewServer returns a server answering with r.
func NewServer(r bmcsim.Responder, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AttentionInterval <= 0 {
		opts.AttentionInterval = 50 * time.Millisecond
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	s := &Server{r: r, opts: opts, log: opts.Logger}
	if n, ok := r.(ChassisNotifier); ok && opts.ForwardChassis {
		n.OnChassisControl(s.forwardChassis)
	}
	return s
}

// forwardChassis sends the VM-level equivalent of a chassis operation to
// the connected QEMU.
func (s *Server) forwardChassis(op bmcsim.ChassisControl) {
	cn := s.cur.Load()
	if cn == nil {
		return
	}
	caps := byte(s.caps.Load())
	var vm byte
	var need byte
	switch op {
	case bmcsim.ChassisPowerDown:
		vm, need = OpPowerOff, CapPower
	case bmcsim.ChassisHardReset, bmcsim.ChassisPowerCycle:
		vm, need = OpReset, CapReset
	case bmcsim.ChassisSoftOff:
		vm, need = OpGracefulShutdown, CapGracefulShutdown
	case bmcsim.ChassisPulseDiag:
		vm, need = OpSendNMI, CapNMI
	default:
		return
	}
	if caps&need == 0 {
		s.log.Info("vmserial: QEMU cannot do chassis operation", slog.String("op", op.String()))
		return
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	s.forwarded.Add(1) // counted as the write starts, like Answered
	if err := cn.writeLocked(Encode(nil, Frame{Kind: KindCommand, Data: []byte{vm}})); err != nil {
		s.log.Warn("vmserial: forwarding chassis operation", slog.String("op", op.String()), slog.Any("err", err))
		return
	}
	s.log.Info("vmserial: chassis operation sent to QEMU", slog.String("op", op.String()))
}

// Serve is NewServer(r, opts).Serve(ctx, ln).
func Serve(ctx context.Context, ln net.Listener, r bmcsim.Responder, opts Options) error {
	return NewServer(r, opts).Serve(ctx, ln)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections: s.connections.Load(), Messages: s.messages.Load(), Answered: s.answered.Load(),
		Silenced: s.silenced.Load(), BadFrames: s.badFrames.Load(), Commands: s.commands.Load(),
		AttnSent: s.attnSent.Load(), NoAttnSent: s.noAttnSent.Load(), Resets: s.resets.Load(), Forwarded: s.forwarded.Load(),
		Version: byte(s.version.Load()), Capabilities: byte(s.caps.Load()),
	}
}

// Serve accepts connections on ln and serves them one after the other
// (QEMU reconnects after a disconnect) until ctx is done, then closes ln
// and returns nil. An Accept error other than the close is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vmserial: accept: %w", err)
		}
		if err := s.ServeConn(ctx, conn); err != nil {
			s.log.Warn("vmserial: connection ended", slog.String("remote", conn.RemoteAddr().String()), slog.Any("err", err))
		}
	}
}

// conn is one QEMU connection's state.
type conn struct {
	s    *Server
	c    net.Conn
	wmu  sync.Mutex // serialises writes and attention state
	attn int        // last attention op sent; -1 unknown
	irq  int        // last interrupt enable op sent; -1 unknown
	buf  []byte
}

// ServeConn serves one connection until the peer closes it (nil) or ctx
// is done (nil), or an I/O error occurs. It closes c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	s.connections.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	s.log.Info("vmserial: QEMU connected", slog.String("remote", c.RemoteAddr().String()))

	cn := &conn{s: s, c: c, attn: -1, irq: -1}
	s.cur.Store(cn)
	defer s.cur.CompareAndSwap(cn, nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.opts.AttentionInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := cn.syncAttention(); err != nil {
					cancel()
					return
				}
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	rd := NewReader(c)
	for {
		f, err := rd.Next()
		if err != nil {
			if errors.Is(err, ErrBadFrame) {
				s.badFrames.Add(1)
				s.log.Debug("vmserial: dropped frame", slog.Any("err", err))
				continue
			}
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				s.log.Info("vmserial: QEMU disconnected")
				return nil
			}
			return fmt.Errorf("vmserial: read: %w", err)
		}
		if f.Kind == KindCommand {
			s.command(f.Data)
			continue
		}
		if err := cn.message(ctx, f); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (s *Server) command(d []byte) {
	s.commands.Add(1)
	switch d[0] {
	case OpVersion:
		if len(d) > 1 {
			s.version.Store(uint32(d[1]))
		}
	case OpCapabilities:
		if len(d) > 1 {
			s.caps.Store(uint32(d[1]))
		}
	case OpReset:
		s.resets.Add(1)
		s.log.Info("vmserial: QEMU reports a VM reset")
	default:
		s.log.Debug("vmserial: ignored control command", slog.Int("op", int(d[0])))
	}
}

// message answers one request, honouring the responder's faults.
func (cn *conn) message(ctx context.Context, f Frame) error {
	s := cn.s
	s.messages.Add(1)
	if ft, ok := s.r.(bmcsim.Faulty); ok {
		if ft.Silent() {
			s.silenced.Add(1)
			return nil
		}
		if d := ft.ResponseDelay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	cn.wmu.Lock()
	cn.buf = s.r.Handle(f.Data, cn.buf[:0])
	out := Encode(nil, Frame{Kind: KindMessage, Seq: f.Seq, Data: cn.buf})
	s.answered.Add(1) // counted before the write so a peer that saw it sees the count
	err := cn.writeLocked(out)
	cn.wmu.Unlock()
	if err != nil {
		return err
	}
	return cn.syncAttention()
}

func (cn *conn) writeLocked(p []byte) error {
	if err := cn.c.SetWriteDeadline(time.Now().Add(cn.s.opts.WriteTimeout)); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("vmserial: set write deadline: %w", err)
	}
	if _, err := cn.c.Write(p); err != nil {
		return fmt.Errorf("vmserial: write: %w", err)
	}
	return nil
}

// syncAttention tells QEMU when the responder's interrupt enable or its
// attention changed. Without OpEnableIRQ QEMU never raises the KCS
// interrupt, and a guest driver that uses it (the kernel's ipmi_si) falls
// back to slow timer polling and misses attention while idle.
func (cn *conn) syncAttention() error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if e, ok := cn.s.r.(bmcsim.IRQEnabler); ok {
		op := OpDisableIRQ
		if e.IRQEnabled() {
			op = OpEnableIRQ
		}
		if op != cn.irq {
			if err := cn.writeLocked(Encode(nil, Frame{Kind: KindCommand, Data: []byte{byte(op)}})); err != nil {
				return err
			}
			cn.s.log.Debug("vmserial: interrupt enable", slog.Int("op", op))
			cn.irq = op
		}
	}
	op := OpNoAttn
	if cn.s.r.Attention() {
		op = OpAttn
		if a, ok := cn.s.r.(bmcsim.AttentionIRQer); ok && a.AttentionIRQ() {
			op = OpAttnIRQ
		}
	}
	if op == cn.attn {
		return nil
	}
	if err := cn.writeLocked(Encode(nil, Frame{Kind: KindCommand, Data: []byte{byte(op)}})); err != nil {
		return err
	}
	if cn.attn != -1 || op != OpNoAttn {
		cn.s.log.Debug("vmserial: attention", slog.Int("op", op))
	}
	cn.attn = op
	if op == OpNoAttn {
		cn.s.noAttnSent.Add(1)
	} else {
		cn.s.attnSent.Add(1)
	}
	return nil
}
