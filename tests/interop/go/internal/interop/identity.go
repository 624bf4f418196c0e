package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
)

// Identity is the part of Dapr's security.Handler the invoke programs use. The full build
// (-tags daprfull) hands out Dapr's own handler; the light build hands out LightIdentity.
type Identity interface {
	ID() spiffeid.ID
	GRPCServerOptionMTLS() grpc.ServerOption
	GRPCDialOptionMTLSUnknownTrustDomain(ns, appID string) grpc.DialOption
}

// LightIdentity is an X.509 SVID from Sentry plus the trust anchors, with the gRPC options built
// exactly as dapr/dapr v1.16.0 pkg/security/security.go builds them. No renewal.
type LightIdentity struct {
	svid    *x509svid.SVID
	anchors *Anchors
}

// StartLightIdentity gets an SVID the way kit crypto/spiffe fetchIdentity does (P-256 key,
// empty CSR, ID from the leaf) through one attempt of newRequestFn (AuthorizeID(Sentry ID)).
func StartLightIdentity(ctx context.Context, f *SecurityFlags) (*LightIdentity, error) {
	anchorsPEM, err := f.Anchors()
	if err != nil {
		return nil, err
	}
	anchors, err := AnchorsFrom(anchorsPEM)
	if err != nil {
		return nil, err
	}
	sentryID, err := f.SentryIDFromFlags()
	if err != nil {
		return nil, err
	}
	ns := CurrentNamespace()
	if f.Namespace != "" {
		ns = f.Namespace
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate private key: %w", err)
	}
	res, err := RequestSVID(ctx, f.SentryAddress, anchors, SignRequest{
		Key: key, AppID: f.AppID, Namespace: ns, Authorizer: tlsconfig.AuthorizeID(sentryID),
	})
	if err != nil {
		return nil, err
	}
	if len(res.Certs) == 0 {
		return nil, errors.New("no certificates received from sentry")
	}
	id, err := x509svid.IDFromCert(res.Certs[0])
	if err != nil {
		return nil, fmt.Errorf("error parsing spiffe id from newly signed certificate: %w", err)
	}
	svid := &x509svid.SVID{ID: id, Certificates: res.Certs, PrivateKey: key}
	return &LightIdentity{svid: svid, anchors: anchors}, nil
}

// ID is the SVID's SPIFFE ID (security.Handler.ID).
func (l *LightIdentity) ID() spiffeid.ID { return l.svid.ID }

// GRPCServerOptionMTLS is security.GRPCServerOptionMTLS: MTLSServerCredentials + AuthorizeAny.
func (l *LightIdentity) GRPCServerOptionMTLS() grpc.ServerOption {
	return grpc.Creds(grpccredentials.MTLSServerCredentials(l.svid, l.anchors, tlsconfig.AuthorizeAny()))
}

// GRPCDialOptionMTLSUnknownTrustDomain is the copy of security.GRPCDialOptionMTLSUnknownTrustDomain:
// MTLSClientCredentials whose authorizer accepts any trust domain but only the path /ns/<ns>/<appID>.
func (l *LightIdentity) GRPCDialOptionMTLSUnknownTrustDomain(ns, appID string) grpc.DialOption {
	expID := "/ns/" + ns + "/" + appID
	matcher := func(actual spiffeid.ID) error {
		if actual.Path() != expID {
			return fmt.Errorf("unexpected SPIFFE ID: %q", actual)
		}
		return nil
	}
	return grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(l.svid, l.anchors, tlsconfig.AdaptMatcher(matcher)),
	)
}
