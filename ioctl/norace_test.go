//go:build !race

package ioctl

const raceEnabled = false
