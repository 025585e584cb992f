package locked

import (
	"sync"
	"testing"
)

// TestSetGetUnderLock: Set and Get take the mutex (they wait for a holder
// to let go) and move whole values; run with -race, concurrent Sets and
// Gets of a struct do not race.
func TestSetGetUnderLock(t *testing.T) {
	type pair struct{ a, b int }
	var (
		mu sync.Mutex
		v  pair
	)
	mu.Lock()
	done := make(chan pair)
	go func() {
		Set(&mu, &v, pair{1, 1})
		done <- Get(&mu, &v)
	}()
	v = pair{7, 7} // the goroutine cannot have stored yet: we hold mu
	mu.Unlock()
	if got := <-done; got != (pair{1, 1}) {
		t.Errorf("Get after Set = %v, want {1 1}", got)
	}

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 1000 {
				Set(&mu, &v, pair{i, i})
			}
		}()
		go func() {
			defer wg.Done()
			for range 1000 {
				if p := Get(&mu, &v); p.a != p.b {
					t.Errorf("torn value %v", p)
					return
				}
			}
		}()
	}
	wg.Wait()
}
