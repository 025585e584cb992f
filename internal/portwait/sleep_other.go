//go:build !linux

package portwait

import "time"

func sleep(d time.Duration) { time.Sleep(d) }
