// Command bench calls one traced function in a tight loop and reports the
// mean wall-clock cost per call, so that a probe's cost per hit is the
// difference to an unprobed run of the same binary.
package main

import (
	"encoding/json"
	"flag"
	"os"
	"time"
)

var sink int

// hot is the probed function. It has a normal Go prologue (stack check and
// frame) because it calls leaf; noinline keeps it a real call.
//
//go:noinline
func hot(i int) int {
	var buf [64]byte
	buf[i&63] = byte(i)
	return leaf(i) + int(buf[(i+1)&63])
}

//go:noinline
func leaf(i int) int { return i * 3 }

func main() {
	n := flag.Int("n", 200000, "calls")
	sleep := flag.Duration("sleep", 0, "then sleep this long before exiting (an idle Go process for the discovery tests and bench)")
	flag.Parse()
	defer time.Sleep(*sleep)
	// Warm up so the first page faults and the probe install are not measured.
	for i := 0; i < 1000; i++ {
		sink += hot(i)
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		sink += hot(i)
	}
	el := time.Since(start)
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"calls":       *n,
		"elapsed_ns":  el.Nanoseconds(),
		"ns_per_call": float64(el.Nanoseconds()) / float64(*n),
	})
}
