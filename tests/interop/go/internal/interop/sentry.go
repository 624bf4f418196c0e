package interop

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
)

// SentrySignTimeout is pkg/security's sentrySignTimeout (one attempt).
const SentrySignTimeout = 3 * time.Second

// SignRequest is what the request function sends; Authorizer checks Sentry's server SVID.
type SignRequest struct {
	Key         crypto.Signer
	AppID       string
	Namespace   string
	TrustDomain string
	Token       string
	Validator   sentryv1pb.SignCertificateRequest_TokenValidator
	Authorizer  tlsconfig.Authorizer
}

// SignResult is Sentry's answer with the chain parsed the way daprd parses it.
type SignResult struct {
	Resp     *sentryv1pb.SignCertificateResponse
	Certs    []*x509.Certificate // DecodePEMCertificates(workload_certificate)
	SentryID spiffeid.ID         // the server SVID's ID the authorizer was shown
}

// RequestSVID is one attempt of dapr/dapr v1.16.0 pkg/security/sentry.go newRequestFn: the
// CSR of an empty x509.CertificateRequest (kit crypto/spiffe fetchIdentity), a connection with
// go-spiffe grpccredentials.TLSClientCredentials(anchors, authorizer), SignCertificate, then
// ValidUntil.CheckValid and the kit PEM chain parser. Errors wrap the gRPC status as Dapr does.
func RequestSVID(ctx context.Context, address string, anchors x509bundle.Source, r SignRequest) (*SignResult, error) {
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, new(x509.CertificateRequest), r.Key)
	if err != nil {
		return nil, fmt.Errorf("failed to create sidecar csr: %w", err)
	}
	res := &SignResult{}
	authorizer := r.Authorizer
	recording := func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		res.SentryID = id
		return authorizer(id, chains)
	}
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(anchors, recording)))
	if err != nil {
		return nil, fmt.Errorf("error establishing connection to sentry: %w", err)
	}
	defer conn.Close()
	req := &sentryv1pb.SignCertificateRequest{
		CertificateSigningRequest: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
		Id:                        r.AppID,
		Token:                     r.Token,
		TrustDomain:               r.TrustDomain,
		Namespace:                 r.Namespace,
		TokenValidator:            r.Validator,
	}
	callCtx, cancel := context.WithTimeout(ctx, SentrySignTimeout)
	defer cancel()
	resp, err := sentryv1pb.NewCAClient(conn).SignCertificate(callCtx, req)
	if err != nil {
		return nil, fmt.Errorf("error from sentry SignCertificate: %w", err)
	}
	if err := resp.GetValidUntil().CheckValid(); err != nil {
		return nil, fmt.Errorf("error parsing ValidUntil: %w", err)
	}
	res.Resp = resp
	res.Certs, err = DecodePEMCertificates(resp.GetWorkloadCertificate())
	if err != nil {
		return nil, fmt.Errorf("error parsing newly signed certificate: %w", err)
	}
	return res, nil
}
