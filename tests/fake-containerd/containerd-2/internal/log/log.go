// Package log is a minimal stand-in for github.com/containerd/log.
package log

import (
	"context"
	"fmt"
	"io"
	"sync"
)

var (
	mu  sync.Mutex
	out io.Writer = io.Discard
)

// SetOutput sets where log lines go (io.Discard by default).
func SetOutput(w io.Writer) {
	mu.Lock()
	out = w
	mu.Unlock()
}

// Entry is a log entry under construction.
type Entry struct {
	ctx context.Context
	err error
}

// G returns the logger of ctx.
func G(ctx context.Context) *Entry { return &Entry{ctx: ctx} }

// WithError adds an error to the entry.
func (e *Entry) WithError(err error) *Entry { return &Entry{ctx: e.ctx, err: err} }

func (e *Entry) logf(level, format string, args ...interface{}) {
	mu.Lock()
	defer mu.Unlock()
	if out == io.Discard {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if e.err != nil {
		fmt.Fprintf(out, "level=%s msg=%q error=%q\n", level, msg, e.err.Error())
	} else {
		fmt.Fprintf(out, "level=%s msg=%q\n", level, msg)
	}
}

// Infof logs at info level.
func (e *Entry) Infof(format string, args ...interface{}) { e.logf("info", format, args...) }

// Debugf logs at debug level.
func (e *Entry) Debugf(format string, args ...interface{}) { e.logf("debug", format, args...) }

// Errorf logs at error level.
func (e *Entry) Errorf(format string, args ...interface{}) { e.logf("error", format, args...) }
