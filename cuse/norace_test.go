//go:build !race

package cuse

const raceEnabled = false
