package interop

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DecodePEMCertificates is a copy of dapr/kit v0.16.1 crypto/pem DecodePEMCertificates, the
// parser daprd applies to Sentry's workload_certificate and to the trust anchors: every
// "CERTIFICATE" block is parsed, other block types are skipped, and no certificate is an error.
func DecodePEMCertificates(crtb []byte) ([]*x509.Certificate, error) {
	certs := []*x509.Certificate{}
	for len(crtb) > 0 {
		var block *pem.Block
		block, crtb = pem.Decode(crtb)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates found")
	}
	return certs, nil
}

// Anchors is the light copy of dapr/kit v0.16.1 crypto/spiffe/trustanchors/static: one x509
// bundle with an empty trust domain, returned for every trust domain asked for. That is why a
// Dapr sidecar accepts peers of any trust domain whose chain ends at its anchors.
type Anchors struct {
	bundle *x509bundle.Bundle
}

// AnchorsFrom parses PEM trust anchors like static.From.
func AnchorsFrom(anchorsPEM []byte) (*Anchors, error) {
	certs, err := DecodePEMCertificates(anchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to decode trust anchors: %w", err)
	}
	return &Anchors{bundle: x509bundle.FromX509Authorities(spiffeid.TrustDomain{}, certs)}, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source (any trust domain, as kit's static).
func (a *Anchors) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return a.bundle, nil
}
