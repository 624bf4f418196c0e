// sentry-client asks Sentry for an X.509 SVID the way daprd does and checks the answer with
// go-spiffe. Prints one JSON line on stdout; on failure {"error": {...}} and exit code 3 when
// Sentry (or the transport) answered with a gRPC status, 1 otherwise.
//
//	-impl manual  (default) One attempt of pkg/security/sentry.go newRequestFn (v1.16.0),
//	              interop.RequestSVID, with a choice of key (-key p256|ed25519|rsa), authorizer
//	              (-authorize exact|path|any) and request fields (-trust-domain, -token,
//	              -validator); also reports Sentry's SPIFFE ID. Works in both builds.
//	-impl dapr    Dapr's own security provider (github.com/dapr/dapr/pkg/security, kit
//	              crypto/spiffe): ECDSA P-256 key, empty-subject CSR, TLSClientCredentials with
//	              AuthorizeID(spiffe://<cp-td>/ns/<cp-ns>/dapr-sentry), 5 attempts x 3 s.
//	              FULL build only (go build -tags daprfull).
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/pysentry/interop/internal/identity"
	"github.com/pysentry/interop/internal/interop"
)

func main() {
	interop.TakeStdout()
	var sec interop.SecurityFlags
	fs := flag.NewFlagSet("sentry-client", flag.ExitOnError)
	sec.Register(fs, "app-id")
	impl := fs.String("impl", "manual", "manual, or dapr (pkg/security; full build only)")
	keyAlg := fs.String("key", "p256", "manual: p256, ed25519 or rsa")
	authorize := fs.String("authorize", "exact", "manual: exact (AuthorizeID), path (/ns/<cp-ns>/dapr-sentry, any trust domain) or any")
	trustDomain := fs.String("trust-domain", "", "manual: SignCertificateRequest.trust_domain")
	token := fs.String("token", "", "manual: SignCertificateRequest.token")
	validator := fs.String("validator", "UNKNOWN", "manual: token_validator enum name")
	timeout := fs.Duration("timeout", 20*time.Second, "overall timeout")
	_ = fs.Parse(os.Args[1:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	anchors, err := sec.Anchors()
	if err != nil {
		interop.Fail("anchors", err)
	}

	switch *impl {
	case "dapr":
		runDapr(ctx, &sec, anchors, *timeout)
	case "manual":
		runManual(ctx, &sec, anchors, *keyAlg, *authorize, *trustDomain, *token, *validator)
	default:
		interop.Fail("flags", fmt.Errorf("unknown -impl %q", *impl))
	}
}

func runDapr(ctx context.Context, sec *interop.SecurityFlags, anchors []byte, timeout time.Duration) {
	if identity.Flavor != "full" {
		interop.Fail("flags", errors.New("-impl dapr needs the full build (go build -tags daprfull)"))
	}
	tmp, err := os.MkdirTemp("", "sentry-client-")
	if err != nil {
		interop.Fail("tempdir", err)
	}
	defer os.RemoveAll(tmp)
	idDir := filepath.Join(tmp, "identity")
	id, _, err := identity.Start(ctx, sec, idDir, timeout)
	if err != nil {
		interop.Fail("sign", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(idDir, "cert.pem"))
	if err != nil {
		interop.Fail("read", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(idDir, "key.pem"))
	if err != nil {
		interop.Fail("read", err)
	}
	rep, err := interop.CheckSVID(certPEM, keyPEM, anchors)
	if err != nil {
		interop.Fail("verify", err)
	}
	interop.Emit(map[string]any{
		"impl":        "dapr",
		"build":       identity.Flavor,
		"key":         "p256",
		"handler_id":  id.ID().String(),
		"sentry_id":   mustSentryID(sec).String(),
		"authorize":   "exact",
		"svid":        rep,
		"not_before":  rep.NotBefore,
		"not_after":   rep.NotAfter,
		"spiffe_id":   rep.SpiffeID,
		"chain_len":   rep.ChainLen,
		"valid_until": nil,  // not exposed by pkg/security; see -impl manual
		"key_in_leaf": true, // x509svid.Parse checked it
	})
}

func mustSentryID(sec *interop.SecurityFlags) spiffeid.ID {
	id, err := sec.SentryIDFromFlags()
	if err != nil {
		interop.Fail("flags", err)
	}
	return id
}

func newKey(alg string) (crypto.Signer, error) {
	switch alg {
	case "p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "rsa":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown -key %q", alg)
}

func runManual(ctx context.Context, sec *interop.SecurityFlags, anchorsPEM []byte, keyAlg, authorize, trustDomain, token, validator string) {
	key, err := newKey(keyAlg)
	if err != nil {
		interop.Fail("flags", err)
	}
	anchors, err := interop.AnchorsFrom(anchorsPEM)
	if err != nil {
		interop.Fail("anchors", err)
	}
	sentryID := mustSentryID(sec)
	var authorizer tlsconfig.Authorizer
	switch authorize {
	case "exact":
		authorizer = tlsconfig.AuthorizeID(sentryID)
	case "path":
		authorizer = tlsconfig.AdaptMatcher(func(actual spiffeid.ID) error {
			if actual.Path() != sentryID.Path() {
				return fmt.Errorf("unexpected SPIFFE ID: %q", actual)
			}
			return nil
		})
	case "any":
		authorizer = tlsconfig.AuthorizeAny()
	default:
		interop.Fail("flags", fmt.Errorf("unknown -authorize %q", authorize))
	}
	enum, ok := sentryv1pb.SignCertificateRequest_TokenValidator_value[validator]
	if !ok {
		interop.Fail("flags", fmt.Errorf("unknown -validator %q", validator))
	}
	ns := interop.CurrentNamespace()
	if sec.Namespace != "" {
		ns = sec.Namespace
	}
	res, err := interop.RequestSVID(ctx, sec.SentryAddress, anchors, interop.SignRequest{
		Key:         key,
		AppID:       sec.AppID,
		Namespace:   ns,
		TrustDomain: trustDomain,
		Token:       token,
		Validator:   sentryv1pb.SignCertificateRequest_TokenValidator(enum),
		Authorizer:  authorizer,
	})
	if err != nil {
		interop.Fail("sign", err)
	}
	resp := res.Resp
	// PKCS#8 for every key type (kit v0.16.1's EncodePrivateKey knows only ECDSA).
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		interop.Fail("key", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	rep, err := interop.CheckSVID(resp.GetWorkloadCertificate(), keyPEM, anchorsPEM)
	if err != nil {
		interop.Fail("verify", err)
	}
	if len(res.Certs) != rep.ChainLen {
		interop.Fail("parse", errors.New("kit and go-spiffe parsed different chain lengths"))
	}
	var anchorsInResp int
	for _, b := range resp.GetTrustChainCertificates() {
		certs, err := interop.DecodePEMCertificates(b)
		if err != nil {
			interop.Fail("parse", fmt.Errorf("trust_chain_certificates: %w", err))
		}
		anchorsInResp += len(certs)
	}
	interop.Emit(map[string]any{
		"impl":                     "manual",
		"build":                    identity.Flavor,
		"key":                      keyAlg,
		"sentry_id":                res.SentryID.String(),
		"authorize":                authorize,
		"svid":                     rep,
		"not_before":               rep.NotBefore,
		"not_after":                rep.NotAfter,
		"spiffe_id":                rep.SpiffeID,
		"chain_len":                rep.ChainLen,
		"valid_until":              resp.GetValidUntil().AsTime().UTC().Format(time.RFC3339),
		"trust_chain_entries":      len(resp.GetTrustChainCertificates()),
		"trust_chain_certificates": anchorsInResp,
		"key_in_leaf":              true,
	})
}
