package wait

import "time"

// Timer abstracts how wait functions interact with time runtime efficiently. Test
// code may implement this interface directly but package consumers are encouraged
// to use the Backoff type as the primary mechanism for acquiring a Timer. The
// interface is a simplification of clock.Timer to prevent misuse. Timers are not
// expected to be safe for calls from multiple goroutines.
type Timer interface {
	// C returns a channel that will receive a struct{} each time the timer fires.
	// The channel should not be waited on after Stop() is invoked. It is allowed
	// to cache the returned value of C() for the lifetime of the Timer.
	C() <-chan time.Time
	// Next is invoked by wait functions to signal timers that the next interval
	// should begin. You may only use Next() if you have drained the channel C().
	// You should not call Next() after Stop() is invoked.
	Next()
	// Stop releases the timer. It is safe to invoke if no other methods have been
	// called.
	Stop()
}

// Backoff holds parameters applied to a Backoff function (subset).
type Backoff struct {
	// The initial duration.
	Duration time.Duration
}

// Timer returns a timer implementation appropriate to this backoff's parameters
// for use with wait functions: here always a fixed-interval ticker, which is
// what Backoff{Duration: interval}.Timer() returns in apimachinery.
func (b Backoff) Timer() Timer {
	return &fixedTimer{interval: b.Duration}
}

// fixedTimer implements Timer with a time.Ticker created lazily on the first
// call to C(): ticks fall on a fixed grid started at that call, independent of
// how long the condition takes.
type fixedTimer struct {
	interval time.Duration
	t        *time.Ticker
}

func (t *fixedTimer) C() <-chan time.Time {
	if t.t == nil {
		t.t = time.NewTicker(t.interval)
	}
	return t.t.C
}

func (t *fixedTimer) Next() {
	// no-op for fixed timers
}

func (t *fixedTimer) Stop() {
	if t.t != nil {
		t.t.Stop()
	}
}
