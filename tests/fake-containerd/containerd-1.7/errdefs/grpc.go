// Package errdefs is the part of containerd's errdefs the CRI handlers use.
package errdefs

import (
	"errors"
	"strings"
)

// ErrNotFound is wrapped by errors of missing objects.
var ErrNotFound = errors.New("not found")

// Status is a gRPC status error (stand-in for google.golang.org/grpc/status).
type Status struct {
	Code    string
	Message string
}

func (s *Status) Error() string { return "rpc error: code = " + s.Code + " desc = " + s.Message }

// ToGRPC converts an error to a gRPC status error; nil stays nil.
//
//go:noinline
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	code := "Unknown"
	if errors.Is(err, ErrNotFound) || strings.HasSuffix(err.Error(), "not found") {
		code = "NotFound"
	}
	return &Status{Code: code, Message: err.Error()}
}
