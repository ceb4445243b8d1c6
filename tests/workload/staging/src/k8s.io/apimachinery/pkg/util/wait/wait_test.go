package wait

import (
	"context"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestSymbolNames(t *testing.T) {
	for _, c := range []struct {
		fn   interface{}
		want string
	}{
		{PollUntilContextTimeout, "k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout"},
		{Until, "k8s.io/apimachinery/pkg/util/wait.Until"},
		{JitterUntil, "k8s.io/apimachinery/pkg/util/wait.JitterUntil"},
	} {
		if got := runtime.FuncForPC(reflect.ValueOf(c.fn).Pointer()).Name(); got != c.want {
			t.Errorf("symbol %q, want %q", got, c.want)
		}
	}
}

// Immediate check first, then one check per tick.
func TestPollUntilContextTimeout(t *testing.T) {
	var calls []time.Duration
	start := time.Now()
	err := PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Second, true, func(context.Context) (bool, error) {
		calls = append(calls, time.Since(start))
		return len(calls) == 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 {
		t.Fatalf("%d calls", len(calls))
	}
	if calls[0] > 10*time.Millisecond {
		t.Errorf("first check at %v, want immediate", calls[0])
	}
	if calls[1] < 15*time.Millisecond || calls[2] < 35*time.Millisecond {
		t.Errorf("checks at %v, want ~0, 20ms, 40ms", calls)
	}
}

func TestPollUntilContextTimeoutTimesOut(t *testing.T) {
	err := PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Millisecond, false, func(context.Context) (bool, error) {
		return false, nil
	})
	if err != context.DeadlineExceeded {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestUntil(t *testing.T) {
	stop := make(chan struct{})
	var n int32
	done := make(chan struct{})
	go func() {
		Until(func() {
			if atomic.AddInt32(&n, 1) == 3 {
				close(stop)
			}
		}, time.Millisecond, stop)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Until did not stop")
	}
	if atomic.LoadInt32(&n) != 3 {
		t.Errorf("f ran %d times, want 3", n)
	}
}
