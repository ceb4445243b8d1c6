// Package wait has the shapes of apimachinery's poll helpers that kubelet's
// mount wait uses: PollImmediate (kubelet <= 1.27) and
// PollUntilContextTimeout (1.28+), and one it does not (PollUntilContextCancel).
package wait

import (
	"context"
	"errors"
	"time"
)

type ConditionFunc func() (done bool, err error)

type ConditionWithContextFunc func(context.Context) (done bool, err error)

var ErrWaitTimeout = errors.New("timed out waiting for the condition")

//go:noinline
func loopConditionUntilContext(ctx context.Context, interval time.Duration, immediate bool, condition ConditionWithContextFunc) error {
	if immediate {
		if ok, err := condition(ctx); err != nil || ok {
			return err
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ErrWaitTimeout
		case <-t.C:
			if ok, err := condition(ctx); err != nil || ok {
				return err
			}
		}
	}
}

// PollUntilContextTimeout as in apimachinery >= v0.27.
func PollUntilContextTimeout(ctx context.Context, interval, timeout time.Duration, immediate bool, condition ConditionWithContextFunc) error {
	deadlineCtx, deadlineCancel := context.WithTimeout(ctx, timeout)
	defer deadlineCancel()
	return loopConditionUntilContext(deadlineCtx, interval, immediate, condition)
}

// PollUntilContextCancel: same loop, no timeout; kubelet's mount wait never
// used it.
func PollUntilContextCancel(ctx context.Context, interval time.Duration, immediate bool, condition ConditionWithContextFunc) error {
	return loopConditionUntilContext(ctx, interval, immediate, condition)
}

// PollImmediate as in apimachinery <= v0.27 (kept out of line so that both
// a CALL and the symbol exist whatever the toolchain inlines).
//
//go:noinline
func PollImmediate(interval, timeout time.Duration, condition ConditionFunc) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return loopConditionUntilContext(ctx, interval, true, func(context.Context) (bool, error) { return condition() })
}

// Until runs f every period until stopCh is closed.
func Until(f func(), period time.Duration, stopCh <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		f()
		select {
		case <-stopCh:
			return
		case <-t.C:
		}
	}
}
