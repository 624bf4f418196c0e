package interop

import (
	"errors"
	"flag"
	"os"
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
