//go:build !gen_new

package pleg

func (g *GenericPLEG) Step() { g.Relist() }
