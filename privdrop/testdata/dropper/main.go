// Command dropper is privdrop's test subject: it locks goroutines to
// threads (as the engine locks its own for iopl), drops, and reports every
// thread's state and whether a root-only file still opens.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/ipmi-cuse/ipmi-cuse/privdrop"
)

func main() {
	locked := os.Args[1]
	user := ""
	if len(os.Args) > 2 {
		user = os.Args[2]
	}
	hold := make(chan struct{})
	for range 3 {
		go func() {
			runtime.LockOSThread()
			<-hold
		}()
	}
	if err := privdrop.Drop(privdrop.Config{User: user}); err != nil {
		fmt.Println("drop:", err)
		os.Exit(1)
	}
	ts, err := privdrop.Threads(os.Getpid())
	if err != nil {
		fmt.Println("threads:", err)
		os.Exit(1)
	}
	for _, t := range ts {
		fmt.Printf("thread dropped=%v uid=%s\n", t.Dropped(), t.UID)
	}
	if f, err := os.Open(locked); err == nil {
		f.Close()
		fmt.Println("root-only file: opened")
	} else {
		fmt.Println("root-only file: refused")
	}
	close(hold)
}
