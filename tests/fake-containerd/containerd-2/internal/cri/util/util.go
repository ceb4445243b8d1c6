// Package util holds the CRI plugin's small helpers.
package util

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

type namespaceKey struct{}

// WithNamespace returns a context in containerd's k8s.io namespace.
func WithNamespace(ctx context.Context) context.Context {
	return context.WithValue(ctx, namespaceKey{}, "k8s.io")
}

// GenerateID generates a random unique id: 64 hex digits.
func GenerateID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
