//go:build !linux

package bt

import "time"

func sleep(d time.Duration) { time.Sleep(d) }
