// Package runtime is the subset of k8s.io/apimachinery/pkg/util/runtime the
// podtrace workload needs.
package runtime

import (
	"context"
	"fmt"
	"os"
)

// ReallyCrash controls the behavior of HandleCrash and defaults to true,
// like the real package: a recovered panic is re-raised after logging.
var ReallyCrash = true

// PanicHandlers is a list of functions which will be invoked when a panic happens.
var PanicHandlers = []func(context.Context, interface{}){logPanic}

// HandleCrash simply catches a crash and logs an error. Meant to be called via defer.
func HandleCrash(additionalHandlers ...func(interface{})) {
	if r := recover(); r != nil {
		handleCrash(context.Background(), r, additionalHandlers...)
	}
}

// HandleCrashWithContext is HandleCrash with a context.
func HandleCrashWithContext(ctx context.Context, additionalHandlers ...func(context.Context, interface{})) {
	if r := recover(); r != nil {
		for _, fn := range PanicHandlers {
			fn(ctx, r)
		}
		for _, fn := range additionalHandlers {
			fn(ctx, r)
		}
		if ReallyCrash {
			panic(r)
		}
	}
}

func handleCrash(ctx context.Context, r interface{}, additionalHandlers ...func(interface{})) {
	for _, fn := range PanicHandlers {
		fn(ctx, r)
	}
	for _, fn := range additionalHandlers {
		fn(r)
	}
	if ReallyCrash {
		panic(r)
	}
}

// Quiet, when set, suppresses logPanic output (used by the torture driver,
// which panics on purpose thousands of times).
var Quiet bool

func logPanic(_ context.Context, r interface{}) {
	if Quiet {
		return
	}
	fmt.Fprintf(os.Stderr, "Observed a panic: %v\n", r)
}
