package interop

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Peer is a caller's SPIFFE ID parsed in Dapr's path format /ns/<namespace>/<app-id>.
type Peer struct {
	ID        string
	Namespace string
	AppID     string
}

// FromGRPCContext is a copy of dapr/dapr v1.16.0 pkg/security/spiffe/spiffe.go FromGRPCContext:
// the verified peer ID that go-spiffe's grpccredentials put on the connection, split on "/",
// at least 4 segments "" "ns" <namespace> <app-id>, both non-empty.
func FromGRPCContext(ctx context.Context) (*Peer, bool, error) {
	id, ok := grpccredentials.PeerIDFromContext(ctx)
	if !ok {
		return nil, false, nil
	}
	split := strings.Split(id.Path(), "/")
	if len(split) < 4 || split[0] != "" || split[1] != "ns" {
		return nil, false, fmt.Errorf("malformed SPIFFE ID: %s", id.String())
	}
	if len(split[2]) == 0 || len(split[3]) == 0 {
		return nil, false, fmt.Errorf("malformed SPIFFE ID: %s", id.String())
	}
	return &Peer{ID: id.URL().String(), Namespace: split[2], AppID: split[3]}, true, nil
}

// SentryID is a copy of dapr/dapr v1.16.0 pkg/security/security.go SentryID.
func SentryID(sentryTrustDomain spiffeid.TrustDomain, sentryNamespace string) (spiffeid.ID, error) {
	sentryID, err := spiffeid.FromSegments(sentryTrustDomain, "ns", sentryNamespace, "dapr-sentry")
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("failed to parse sentry SPIFFE ID: %w", err)
	}
	return sentryID, nil
}

// CurrentNamespace is a copy of dapr/dapr v1.16.0 pkg/security/security.go CurrentNamespace.
func CurrentNamespace() string {
	namespace, ok := os.LookupEnv("NAMESPACE")
	if !ok {
		return "default"
	}
	return namespace
}

// SentryIDFromFlags is SentryID for -control-plane-trust-domain / -control-plane-namespace.
func (f *SecurityFlags) SentryIDFromFlags() (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(f.CPTrustDomain)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return SentryID(td, f.CPNamespace)
}
