//go:build !daprfull

// Package identity picks the SVID source of the invoke programs. The default (LIGHT) build uses
// interop.LightIdentity: Dapr's generated protos, grpc and go-spiffe only. The FULL build
// (-tags daprfull, full.go) runs Dapr's own pkg/security provider instead.
package identity

import (
	"context"
	"time"

	"github.com/pysentry/interop/internal/interop"
)

// Flavor names this build: "light" or "full".
const Flavor = "light"

// Start gets an SVID from Sentry (one attempt, as one newRequestFn call). dir is ignored: only
// the full build writes the identity files.
func Start(ctx context.Context, f *interop.SecurityFlags, _ string, timeout time.Duration) (interop.Identity, <-chan error, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, err := interop.StartLightIdentity(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	return id, make(chan error), nil
}

// PeerFromGRPCContext is interop.FromGRPCContext, the copy of Dapr's spiffe.FromGRPCContext.
func PeerFromGRPCContext(ctx context.Context) (*interop.Peer, bool, error) {
	return interop.FromGRPCContext(ctx)
}
