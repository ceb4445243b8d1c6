// Package volumemanager has getUnmountedVolumes both ways at once: inlined
// into the mount wait's condition closure, and kept out of line for the call
// through an interface. A probe on it attaches ("ok") but does not see the
// inlined calls; `podtrace probes` must say where they are.
package volumemanager

type volumeManager struct{ unmounted []int }

func New(n int) *volumeManager { return &volumeManager{unmounted: make([]int, n)} }

func (vm *volumeManager) getUnmountedVolumes(i int) int {
	return vm.unmounted[i%len(vm.unmounted)]
}

// verifyVolumesMountedFunc returns the condition closure, which holds the
// inlined copy of getUnmountedVolumes.
//
//go:noinline
func (vm *volumeManager) verifyVolumesMountedFunc(i int) func() (bool, error) {
	return func() (bool, error) { return vm.getUnmountedVolumes(i) == 0, nil }
}

// poll stands for the wait helper: the closure is called through a func
// value, so it keeps its own code.
//
//go:noinline
func poll(cond func() (bool, error)) int {
	if done, err := cond(); done || err != nil {
		return 1
	}
	return 0
}

//go:noinline
func (vm *volumeManager) WaitForAttachAndMount(i int) int {
	return poll(vm.verifyVolumesMountedFunc(i))
}

type unmounted interface{ getUnmountedVolumes(int) int }

// ViaInterface cannot be devirtualised: the method keeps its own code.
//
//go:noinline
func ViaInterface(u unmounted, i int) int { return u.getUnmountedVolumes(i) }

// Check calls both ways.
func Check(vm *volumeManager, i int) int { return vm.WaitForAttachAndMount(i) + ViaInterface(vm, i) }
