//go:build daprfull

package identity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dapr/dapr/pkg/healthz"
	"github.com/dapr/dapr/pkg/modes"
	"github.com/dapr/dapr/pkg/security"
	daprspiffe "github.com/dapr/dapr/pkg/security/spiffe"

	"github.com/pysentry/interop/internal/interop"
)

// Flavor names this build: "light" or "full".
const Flavor = "full"

// Start runs Dapr's own security provider (pkg/security: kit crypto/spiffe key + CSR,
// newRequestFn dialing Sentry with TLSClientCredentials + AuthorizeID(sentry ID), 5 attempts
// of 3 s) exactly as daprd does with --enable-mtls in standalone mode, and waits until the
// first SVID is in place. The SVID files are written to dir (WriteIdentityToFile) when set.
// The channel reports the provider's exit (renewal loop ended).
func Start(ctx context.Context, f *interop.SecurityFlags, dir string, timeout time.Duration) (interop.Identity, <-chan error, error) {
	anchors, err := f.Anchors()
	if err != nil {
		return nil, nil, err
	}
	if f.Namespace != "" {
		// security.CurrentNamespace() reads $NAMESPACE, as in daprd.
		os.Setenv("NAMESPACE", f.Namespace)
	}
	var writeTo *string
	if dir != "" {
		writeTo = &dir
	}
	prov, err := security.New(ctx, security.Options{
		SentryAddress:           f.SentryAddress,
		ControlPlaneTrustDomain: f.CPTrustDomain,
		ControlPlaneNamespace:   f.CPNamespace,
		TrustAnchors:            anchors,
		AppID:                   f.AppID,
		MTLSEnabled:             true,
		Mode:                    modes.StandaloneMode,
		Healthz:                 healthz.New(),
		WriteIdentityToFile:     writeTo,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("security.New: %w", err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- prov.Run(ctx) }()

	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type handlerResult struct {
		h   security.Handler
		err error
	}
	hch := make(chan handlerResult, 1)
	go func() {
		h, err := prov.Handler(wait)
		hch <- handlerResult{h, err}
	}()
	select {
	case r := <-hch:
		if r.err != nil {
			return nil, nil, fmt.Errorf("security provider not ready: %w", r.err)
		}
		return r.h, errCh, nil
	case err := <-errCh:
		if err == nil {
			err = errors.New("security provider stopped")
		}
		return nil, nil, err
	}
}

// PeerFromGRPCContext is Dapr's own pkg/security/spiffe.FromGRPCContext.
func PeerFromGRPCContext(ctx context.Context) (*interop.Peer, bool, error) {
	parsed, ok, err := daprspiffe.FromGRPCContext(ctx)
	if err != nil || !ok {
		return nil, ok, err
	}
	return &interop.Peer{ID: parsed.URL().String(), Namespace: parsed.Namespace(), AppID: parsed.AppID()}, true, nil
}
