// Package api has the pod type the probed functions take (its layout does
// not matter here: these programs are only resolved, never traced).
package api

type Pod struct {
	Name, Namespace, UID string
	Volumes             []string
}
