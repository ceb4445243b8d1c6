// Package groundtruth records, for every stage of a pod start-up that
// podtrace measures, when the workload itself saw it happen. Tests compare
// the tracer's numbers with these records.
//
// Cost on the measured path is kept to: one clock_gettime(CLOCK_MONOTONIC)
// system call per timestamp, and, after the measured call has returned, one
// mutex-protected append of a Record to an in-memory slice. Nothing is
// formatted or written until Flush, which the program calls at exit.
package groundtruth

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	v1 "k8s.io/api/core/v1"
)

const clockMonotonic = 1 // CLOCK_MONOTONIC: the clock bpf_ktime_get_ns() reads

// MonoNow returns clock_gettime(CLOCK_MONOTONIC) in nanoseconds, made with a
// real system call (not the vDSO, not Go's runtime clock), so the value is
// directly comparable with bpf_ktime_get_ns() in the tracer.
func MonoNow() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}

// KV is one extra field of a record, written after the common fields.
type KV struct {
	K string
	V interface{}
}

// Record is one line of the ground-truth JSONL file.
type Record struct {
	Stage     string
	PodUID    string
	PodName   string
	Namespace string
	StartMono int64
	EndMono   int64
	Goid      int64 // 0: not known
	Extra     []KV
}

// Recorder collects records in memory. A nil *Recorder is valid and
// discards everything (used for the torture components).
type Recorder struct {
	mu         sync.Mutex
	records    []Record
	pollChecks map[string]int // poll_check records per pod UID
	// unixOffset converts CLOCK_MONOTONIC to CLOCK_REALTIME:
	// unix = mono + unixOffset (measured once, at start-up).
	unixOffset int64
}

// NewRecorder returns an empty recorder and measures the offset between
// the monotonic clock and wall-clock time.
func NewRecorder() *Recorder {
	// Bracket time.Now() between two monotonic readings, keep the tightest.
	best := int64(1 << 62)
	var off int64
	for i := 0; i < 5; i++ {
		a := MonoNow()
		u := time.Now().UnixNano()
		b := MonoNow()
		if b-a < best {
			best = b - a
			off = u - (a+b)/2
		}
	}
	return &Recorder{
		records:    make([]Record, 0, 4096),
		pollChecks: make(map[string]int),
		unixOffset: off,
	}
}

// Add appends a record.
func (r *Recorder) Add(rec Record) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if rec.Stage == "poll_check" {
		r.pollChecks[rec.PodUID]++
	}
	r.records = append(r.records, rec)
	r.mu.Unlock()
}

// PollChecks returns how many poll_check records were added for a pod.
func (r *Recorder) PollChecks(podUID string) int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pollChecks[podUID]
}

// Records returns a copy of the records added so far.
func (r *Recorder) Records() []Record {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, len(r.records))
	copy(out, r.records)
	return out
}

// UnixOffset returns CLOCK_REALTIME - CLOCK_MONOTONIC in ns.
func (r *Recorder) UnixOffset() int64 { return r.unixOffset }

// WriteTo writes all records as JSONL, in the order they were added
// (the "config" record is added first by the program).
func (r *Recorder) WriteTo(w io.Writer) (int64, error) {
	recs := r.Records()
	bw := bufio.NewWriterSize(w, 1<<16)
	var n int64
	for i := range recs {
		line, err := r.encode(&recs[i])
		if err != nil {
			return n, err
		}
		m, err := bw.Write(line)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// WriteFile writes the JSONL file (atomically: temp file + rename).
func (r *Recorder) WriteFile(path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := r.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (r *Recorder) encode(rec *Record) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"stage":`...)
	b = strconv.AppendQuote(b, rec.Stage)
	if rec.Stage != "config" && rec.Stage != "torture" {
		b = append(b, `,"pod_uid":`...)
		b = strconv.AppendQuote(b, rec.PodUID)
		b = append(b, `,"pod_name":`...)
		b = strconv.AppendQuote(b, rec.PodName)
		b = append(b, `,"namespace":`...)
		b = strconv.AppendQuote(b, rec.Namespace)
		b = append(b, `,"start_mono_ns":`...)
		b = strconv.AppendInt(b, rec.StartMono, 10)
		b = append(b, `,"end_mono_ns":`...)
		b = strconv.AppendInt(b, rec.EndMono, 10)
		b = append(b, `,"start_unix_ns":`...)
		b = strconv.AppendInt(b, rec.StartMono+r.unixOffset, 10)
		b = append(b, `,"end_unix_ns":`...)
		b = strconv.AppendInt(b, rec.EndMono+r.unixOffset, 10)
		b = append(b, `,"duration_ns":`...)
		b = strconv.AppendInt(b, rec.EndMono-rec.StartMono, 10)
		if rec.Goid != 0 {
			b = append(b, `,"goid":`...)
			b = strconv.AppendInt(b, rec.Goid, 10)
		}
	}
	for _, kv := range rec.Extra {
		b = append(b, ',')
		b = strconv.AppendQuote(b, kv.K)
		b = append(b, ':')
		v, err := json.Marshal(kv.V)
		if err != nil {
			return nil, fmt.Errorf("ground truth field %q: %w", kv.K, err)
		}
		b = append(b, v...)
	}
	b = append(b, '}', '\n')
	return b, nil
}

// Goid returns the current goroutine's id, parsed from runtime.Stack
// ("goroutine 123 [running]:"). It costs about a microsecond: call it once
// per goroutine, never on a measured path.
func Goid() int64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	s := buf[:n]
	const prefix = "goroutine "
	if len(s) < len(prefix) || string(s[:len(prefix)]) != prefix {
		return 0
	}
	s = s[len(prefix):]
	var id int64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}

type goidKey struct{}

// WithGoid returns ctx carrying the current goroutine's id, so that code
// further down the same goroutine can tag its records without calling Goid.
func WithGoid(ctx context.Context) context.Context {
	return ContextWithGoid(ctx, Goid())
}

// ContextWithGoid returns ctx carrying goid (see WithGoid).
func ContextWithGoid(ctx context.Context, goid int64) context.Context {
	return context.WithValue(ctx, goidKey{}, goid)
}

// GoidFrom returns the goroutine id stored by WithGoid, or 0.
func GoidFrom(ctx context.Context) int64 {
	if ctx == nil {
		return 0
	}
	if v, ok := ctx.Value(goidKey{}).(int64); ok {
		return v
	}
	return 0
}

// Stages whose measured function also stamps itself (see Enter).
const (
	InSync = iota
	InMountWait
	InRuntimeSync
	InCreateSandbox
	InStartContainer
	nInner
)

// Inner holds the callee-side stamps of one pod sync's stages. The caller's
// stamps (StartMono/EndMono) bracket the call, so the traced span lies inside
// them; these, taken by the function itself as it starts and just before it
// returns, lie inside the traced span. A deschedule between a stamp and the
// probe widens one bracket, never both: the tracer must be within 1 ms of the
// caller's or the callee's numbers, and always between them.
type Inner struct{ start, end [nInner]int64 }

type innerKey struct{}

// WithInner returns ctx carrying a fresh Inner for one sync's stages.
func WithInner(ctx context.Context) context.Context {
	return context.WithValue(ctx, innerKey{}, &Inner{})
}

// Enter stamps the start of stage s from inside its function; defer the
// returned func to stamp the end. A ctx without Inner costs nothing more.
func Enter(ctx context.Context, s int) func() {
	in, _ := ctx.Value(innerKey{}).(*Inner)
	if in == nil {
		return func() {}
	}
	in.start[s] = MonoNow()
	return func() { in.end[s] = MonoNow() }
}

// InnerKV returns stage s's callee-side stamps as record fields (none when
// ctx carries no Inner).
func InnerKV(ctx context.Context, s int) []KV {
	in, _ := ctx.Value(innerKey{}).(*Inner)
	if in == nil || in.start[s] == 0 || in.end[s] == 0 {
		return nil
	}
	return []KV{{K: "inner_start_mono_ns", V: in.start[s]}, {K: "inner_end_mono_ns", V: in.end[s]}}
}

// AddStage adds the record of one pod stage: start and end stamped by the
// caller around the call, the goroutine id from ctx, extra, then the
// callee's own stamps of slot in (see Enter) when ctx carries them.
func (r *Recorder) AddStage(ctx context.Context, stage string, in int, pod *v1.Pod, start, end int64, extra ...KV) {
	r.Add(Record{
		Stage:     stage,
		PodUID:    string(pod.UID),
		PodName:   pod.Name,
		Namespace: pod.Namespace,
		StartMono: start,
		EndMono:   end,
		Goid:      GoidFrom(ctx),
		Extra:     append(extra, InnerKV(ctx, in)...),
	})
}

// ErrString is err's message, "" for nil.
func ErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
