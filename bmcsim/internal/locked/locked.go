// Package locked holds the two accesses that the simulated BMC's register
// adapters (kcsbmc, btbmc, ssifbmc) make from outside the host's polling:
// a test goroutine sets a fault, or reads the counters, under the same
// mutex that guards the registers, while the host polls from another.
// Every fault setter is one Set and every counter getter one Get, so each
// adapter declares only what its faults mean, not the locking again.
package locked

import "sync"

// Set stores v in *p while holding mu.
func Set[T any](mu *sync.Mutex, p *T, v T) {
	mu.Lock()
	defer mu.Unlock()
	*p = v
}

// Get returns a copy of *p taken while holding mu.
func Get[T any](mu *sync.Mutex, p *T) T {
	mu.Lock()
	defer mu.Unlock()
	return *p
}
