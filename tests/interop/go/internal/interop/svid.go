package interop

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SVIDReport describes an X.509 SVID as Go (go-spiffe) sees it.
type SVIDReport struct {
	SpiffeID        string   `json:"spiffe_id"`
	VerifiedID      string   `json:"verified_id"`
	NotBefore       string   `json:"not_before"`
	NotAfter        string   `json:"not_after"`
	ChainLen        int      `json:"chain_len"`
	VerifiedChains  int      `json:"verified_chains"`
	VerifiedPathLen int      `json:"verified_path_len"`
	SignatureAlg    string   `json:"signature_algorithm"`
	PublicKeyAlg    string   `json:"public_key_algorithm"`
	IssuerSubject   string   `json:"issuer"`
	URIs            []string `json:"uris"`
	DNSNames        []string `json:"dns_names"`
	KeyUsage        int      `json:"key_usage"`
	ExtKeyUsage     []int    `json:"ext_key_usage"`
}

// CheckSVID parses certPEM+keyPEM with x509svid.Parse (leaf rules of the SPIFFE X.509-SVID
// spec, and the key must match the leaf), then verifies the chain with x509svid.Verify against
// the anchors through the copy of kit's static trust-anchor source (AnchorsFrom).
func CheckSVID(certPEM, keyPEM, anchorsPEM []byte) (*SVIDReport, error) {
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	anchors, err := AnchorsFrom(anchorsPEM)
	if err != nil {
		return nil, err
	}
	id, chains, err := x509svid.Verify(svid.Certificates, anchors)
	if err != nil {
		return nil, err
	}
	leaf := svid.Certificates[0]
	rep := &SVIDReport{
		SpiffeID:       svid.ID.String(),
		VerifiedID:     id.String(),
		NotBefore:      leaf.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:       leaf.NotAfter.UTC().Format(time.RFC3339),
		ChainLen:       len(svid.Certificates),
		VerifiedChains: len(chains),
		SignatureAlg:   leaf.SignatureAlgorithm.String(),
		PublicKeyAlg:   leaf.PublicKeyAlgorithm.String(),
		IssuerSubject:  leaf.Issuer.String(),
		DNSNames:       leaf.DNSNames,
		KeyUsage:       int(leaf.KeyUsage),
	}
	if len(chains) > 0 {
		rep.VerifiedPathLen = len(chains[0])
	}
	for _, u := range leaf.URIs {
		rep.URIs = append(rep.URIs, u.String())
	}
	for _, eku := range leaf.ExtKeyUsage {
		rep.ExtKeyUsage = append(rep.ExtKeyUsage, int(eku))
	}
	if rep.DNSNames == nil {
		rep.DNSNames = []string{}
	}
	return rep, nil
}
