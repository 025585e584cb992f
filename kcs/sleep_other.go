//go:build !linux

package kcs

import "time"

func sleep(d time.Duration) { time.Sleep(d) }
