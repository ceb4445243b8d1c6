package torture

import "unsafe"

// Stack helpers. Every function here is noinline: their frame sizes are what
// moves the stack pointer by known-ish amounts.

// sp returns an address inside its own frame: a proxy for the caller's stack
// pointer. Two calls from the same frame return the same value unless the
// goroutine stack was moved (copied to a bigger one) in between.
//
//go:noinline
func sp() uintptr {
	var x [1]byte
	return uintptr(unsafe.Pointer(&x))
}

// touch writes to b so that the compiler keeps the pad arrays; b does not
// escape, so the arrays stay in their frames.
//
//go:noinline
func touch(b []byte) {
	b[0]++
	b[len(b)-1]++
}

// burn consumes levels frames of ~1 KiB each, then a fine-grained amount
// chosen by the bits of fine (pads of 512..16 bytes), then calls f.
// burn(0, 0, f) calls f with almost no extra stack (a frame's size is fixed
// at compile time, so the 1 KiB pad lives in a separate function).
//
//go:noinline
func burn(levels int, fine uint, f func()) {
	if levels <= 0 {
		burnFine(fine, f)
		return
	}
	burn1K(levels, fine, f)
}

//go:noinline
func burn1K(levels int, fine uint, f func()) {
	var pad [1024]byte
	touch(pad[:])
	burn(levels-1, fine, f)
}

//go:noinline
func burnFine(bits uint, f func()) {
	switch {
	case bits&32 != 0:
		pad512(bits&^32, f)
	case bits&16 != 0:
		pad256(bits&^16, f)
	case bits&8 != 0:
		pad128(bits&^8, f)
	case bits&4 != 0:
		pad64(bits&^4, f)
	case bits&2 != 0:
		pad32(bits&^2, f)
	case bits&1 != 0:
		pad16(bits&^1, f)
	default:
		f()
	}
}

//go:noinline
func pad512(bits uint, f func()) {
	var p [512]byte
	touch(p[:])
	burnFine(bits, f)
}

//go:noinline
func pad256(bits uint, f func()) {
	var p [256]byte
	touch(p[:])
	burnFine(bits, f)
}

//go:noinline
func pad128(bits uint, f func()) {
	var p [128]byte
	touch(p[:])
	burnFine(bits, f)
}

//go:noinline
func pad64(bits uint, f func()) {
	var p [64]byte
	touch(p[:])
	burnFine(bits, f)
}

//go:noinline
func pad32(bits uint, f func()) {
	var p [32]byte
	touch(p[:])
	burnFine(bits, f)
}

//go:noinline
func pad16(bits uint, f func()) {
	var p [16]byte
	touch(p[:])
	burnFine(bits, f)
}

// deep recurses n levels of ~1 KiB frames and returns: called from inside a
// probed function, it makes the goroutine stack grow (and move) while the
// probed function's frame is live.
//
//go:noinline
func deep(n int) int {
	var pad [1024]byte
	touch(pad[:])
	if n <= 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[len(pad)-1])
}
