package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// runWakeups checks that a reply wakes every kind of waiter the kernel
// driver wakes (ipmi_devintf wakes its poll queue when the receive queue
// goes from empty to non-empty), whatever the waiter did before:
//
//   - epoll_et: an edge-triggered epoll user, which never polls again after
//     its first event and reads until EAGAIN: every later reply must still
//     raise an event.
//   - second_thread: a thread blocked in poll(2) while another thread of
//     the process polls the same file without waiting (timeout 0) and then
//     sends: the sender's poll must not take the sleeper's wake-up away.
//   - after_ready: a poll that found a reply ready, then the queue drained,
//     then a thread waiting: the next reply must wake it.
//
// Each prints "NAME: K of N woken"; a waiter that is not woken within 5 s
// counts as lost.
func runWakeups(args []string) error {
	const n = 10
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	drain := func() int {
		k := 0
		d.Drain(64, func(reply) bool { k++; return true })
		return k
	}

	// Edge-triggered epoll.
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, d.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(d.fd)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	woken := 0
	for i := range n {
		if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(i)); e != 0 {
			return fmt.Errorf("epoll_et send: %v", e)
		}
		ev := make([]unix.EpollEvent, 1)
		if k, err := unix.EpollWait(ep, ev, 5000); err == nil && k == 1 {
			woken++
		}
		drain()
	}
	fmt.Printf("epoll_et: %d of %d woken\n", woken, n)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, d.fd, nil); err != nil {
		return fmt.Errorf("epoll_ctl del: %w", err)
	}

	// A sleeper in another thread, and a non-waiting poll from the sender.
	woken = 0
	for i := range n {
		done := make(chan bool, 1)
		go func() {
			r, err := waitReadable(d.fd, 5*time.Second)
			done <- err == nil && r&unix.POLLIN != 0
		}()
		time.Sleep(20 * time.Millisecond) // let it block in poll
		if _, err := waitReadable(d.fd, 0); err != nil {
			return err
		}
		if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(100+i)); e != 0 {
			return fmt.Errorf("second_thread send: %v", e)
		}
		if <-done {
			woken++
		}
		drain()
	}
	fmt.Printf("second_thread: %d of %d woken\n", woken, n)

	// A poll that found the file ready, the queue drained, then a sleeper.
	woken = 0
	for i := range n {
		if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(200+i)); e != 0 {
			return fmt.Errorf("after_ready send: %v", e)
		}
		if ok, err := d.Wait(5 * time.Second); err != nil || !ok {
			return fmt.Errorf("after_ready: first reply not readable: %v", err)
		}
		drain()
		done := make(chan bool, 1)
		go func() {
			r, err := waitReadable(d.fd, 5*time.Second)
			done <- err == nil && r&unix.POLLIN != 0
		}()
		time.Sleep(20 * time.Millisecond)
		if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(300+i)); e != 0 {
			return fmt.Errorf("after_ready send: %v", e)
		}
		if <-done {
			woken++
		}
		drain()
	}
	fmt.Printf("after_ready: %d of %d woken\n", woken, n)
	return nil
}
