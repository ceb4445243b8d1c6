// Package pleg has GenericPLEG.Relist in every generation and, in gen_new,
// the on-demand per-pod relistPod of kubelet 1.36+.
package pleg

import (
	"fmt"
	"os"
)

type GenericPLEG struct {
	pods     map[string]int
	requests chan string
}

func New() *GenericPLEG { return &GenericPLEG{pods: map[string]int{}, requests: make(chan string, 8)} }

//go:noinline
func (g *GenericPLEG) reconcilePodRecord(podUID string) {
	g.pods[podUID]++
	if g.pods[podUID] > 1000 {
		fmt.Fprintln(os.Stderr, "relisted", podUID)
	}
}

//go:noinline
func (g *GenericPLEG) Relist() {
	for uid := range g.pods {
		g.reconcilePodRecord(uid)
	}
}
