// Package wait is the subset of k8s.io/apimachinery/pkg/util/wait that the
// podtrace workload needs, implemented like the real one (apimachinery
// v0.31-v0.33): PollUntilContextTimeout checks the condition immediately
// (when asked to) and then on every tick of a fixed ticker that was started
// before the first check; Until/JitterUntil run f, then sleep for the period
// (sliding), until stopCh is closed.
//
// Functions a tracer probes are marked //go:noinline. The real ones are
// either too large to inline or contain a defer; ours are small, and an
// inlined function never fires a uprobe at its own symbol.
package wait
