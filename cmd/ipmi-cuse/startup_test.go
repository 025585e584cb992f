package main

import (
	"testing"
	"time"
)

func TestStartupTimes(t *testing.T) {
	noteMain()
	age, err := processAge()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary was forked before this ran, and not a day ago.
	if age <= 0 || age > 24*time.Hour || atMain.age <= 0 || atMain.age > age {
		t.Errorf("process age %v, at main %v: want 0 < at main <= age < a day", age, atMain.age)
	}
	// Spin: the CPU time must grow (within a bound no scheduling reaches).
	before := cpuUsed()
	after := before
	for end := time.Now().Add(time.Minute); after <= before && time.Now().Before(end); {
		after = cpuUsed()
	}
	if after <= before || before < atMain.cpu {
		t.Errorf("CPU used: %v at main, %v, then %v after spinning", atMain.cpu, before, after)
	}
	attrs := startupAttrs()
	want := []string{"started_in", "cpu", "main_after", "cpu_before_main"}
	if len(attrs) != 2*len(want) {
		t.Fatalf("startupAttrs() = %v", attrs)
	}
	for i, k := range want {
		if attrs[2*i] != k {
			t.Errorf("attribute %d is %v, want %s", i, attrs[2*i], k)
		}
		if _, err := time.ParseDuration(attrs[2*i+1].(string)); err != nil {
			t.Errorf("%s = %v: %v", k, attrs[2*i+1], err)
		}
	}
}
