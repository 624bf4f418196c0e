package interop

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/dapr/dapr/pkg/healthz"
	"github.com/dapr/dapr/pkg/modes"
	"github.com/dapr/dapr/pkg/security"
)

// SecurityFlags are the daprd flags (and env) that configure Dapr's security provider.
type SecurityFlags struct {
	SentryAddress string
	AnchorsFile   string
	AppID         string
	Namespace     string
	CPTrustDomain string
	CPNamespace   string
}

// Register adds -sentry-address, -trust-anchors-file, -app-id, -namespace,
// -control-plane-trust-domain and -control-plane-namespace to fs.
func (f *SecurityFlags) Register(fs *flag.FlagSet, appIDFlag string) {
	fs.StringVar(&f.SentryAddress, "sentry-address", "", "host:port of Sentry")
	fs.StringVar(&f.AnchorsFile, "trust-anchors-file", "", "PEM trust anchors (default: $DAPR_TRUST_ANCHORS)")
	fs.StringVar(&f.AppID, appIDFlag, "", "app ID requested from Sentry")
	fs.StringVar(&f.Namespace, "namespace", "", "workload namespace (default: $NAMESPACE or \"default\")")
	fs.StringVar(&f.CPTrustDomain, "control-plane-trust-domain", "localhost", "Sentry's trust domain")
	fs.StringVar(&f.CPNamespace, "control-plane-namespace", "default", "Sentry's namespace")
}

// Anchors reads the trust anchors from -trust-anchors-file or $DAPR_TRUST_ANCHORS (as daprd).
func (f *SecurityFlags) Anchors() ([]byte, error) {
	if f.AnchorsFile != "" {
		return os.ReadFile(f.AnchorsFile)
	}
	if v := os.Getenv("DAPR_TRUST_ANCHORS"); v != "" {
		return []byte(v), nil
	}
	return nil, errors.New("trust anchors are required: pass -trust-anchors-file or set DAPR_TRUST_ANCHORS")
}

// Identity is a running Dapr security provider.
type Identity struct {
	Handler security.Handler
	Dir     string // where the provider wrote key.pem / cert.pem / ca.pem
	errCh   chan error
}

// Err reports the provider's exit (renewal loop ended), if any.
func (i *Identity) Err() <-chan error { return i.errCh }

// StartIdentity runs Dapr's own security provider (pkg/security: kit crypto/spiffe key + CSR,
// newRequestFn dialing Sentry with TLSClientCredentials + AuthorizeID(sentry ID), 5 attempts
// of 3 s) exactly as daprd does with --enable-mtls in standalone mode, and waits until the
// first SVID is in place. The SVID files are written to dir (WriteIdentityToFile).
func StartIdentity(ctx context.Context, f *SecurityFlags, dir string, timeout time.Duration) (*Identity, error) {
	anchors, err := f.Anchors()
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("security.New: %w", err)
	}
	id := &Identity{Dir: dir, errCh: make(chan error, 1)}
	go func() { id.errCh <- prov.Run(ctx) }()

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
			return nil, fmt.Errorf("security provider not ready: %w", r.err)
		}
		id.Handler = r.h
		return id, nil
	case err := <-id.errCh:
		if err == nil {
			err = errors.New("security provider stopped")
		}
		return nil, err
	}
}
