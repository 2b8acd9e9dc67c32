package dcap

import (
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// Config is the JSON settings of the DCAP verifier plugins (tdx, sgx, and
// the Azure TDX vTPM verifier that reuses this package):
//
//	{"collateral_url": "https://api.trustedservices.intel.com/sgx/certification/v4/",
//	 "collateral_dir": "", "cache_dir": "", "offline": false, "timeout": "10s",
//	 "check_revocations": true, "tcb_update": "early",
//	 "accept_expired_collateral": false, "root_ca_file": ""}
type Config struct {
	// CollateralURL is the PCS or PCCS; only its scheme, host and port
	// are used.
	CollateralURL string `json:"collateral_url"`
	// CollateralDir, when set, is the only source of collateral: a
	// directory in dcap.Store's layout that the operator keeps current.
	// Nothing is fetched.
	CollateralDir string `json:"collateral_dir"`
	// CacheDir keeps fetched collateral on disk (created if missing), so
	// that a restart, or an outage of the PCS, does not lose it.
	CacheDir string `json:"cache_dir"`
	// Offline never uses the network: collateral comes from CacheDir.
	Offline bool `json:"offline"`
	// Timeout bounds each request to the PCS.
	Timeout Duration `json:"timeout"`
	// CheckRevocations checks the PCK chain and the TCB signing
	// certificate against Intel's CRLs.
	CheckRevocations bool `json:"check_revocations"`
	// TCBUpdate is "early" (Intel's newest TCB evaluation, trustee's
	// default) or "standard".
	TCBUpdate string `json:"tcb_update"`
	// AcceptExpiredCollateral verifies with collateral past its
	// nextUpdate and reports collateral_expiration_status "1", leaving the
	// decision to policy.
	AcceptExpiredCollateral bool `json:"accept_expired_collateral"`
	// RootCAFile, for tests and labs only, is a PEM file whose
	// certificates replace the pinned Intel SGX Root CA.
	RootCAFile string `json:"root_ca_file"`

	// Now is the clock (nil: time.Now); not a setting.
	Now func() time.Time `json:"-"`
}

// Duration is a setting written as a Go duration string ("10s").
type Duration = sdk.Duration

// DefaultConfig is Intel's PCS, no disk cache, 10 s timeouts, revocation
// checked, early TCB updates.
func DefaultConfig() Config {
	return Config{CollateralURL: DefaultPCSURL, Timeout: Duration(10 * time.Second), CheckRevocations: true, TCBUpdate: "early"}
}

// Configure decodes raw (strictly: unknown keys are errors) over base and
// returns the verifier it describes. Empty raw means base.
func Configure(base Config, raw []byte) (*Verifier, error) {
	c := base
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	return c.Verifier()
}

// Verifier checks the settings and builds a Verifier with a Store.
func (c Config) Verifier() (*Verifier, error) {
	bad := func(format string, args ...any) error {
		return sdk.InvalidArgument("DCAP settings: "+format, args...)
	}
	if c.Timeout <= 0 || time.Duration(c.Timeout) > 5*time.Minute {
		return nil, bad("timeout %s must be between 0 and 5m", time.Duration(c.Timeout))
	}
	if c.TCBUpdate != "early" && c.TCBUpdate != "standard" {
		return nil, bad("tcb_update %q must be \"early\" or \"standard\"", c.TCBUpdate)
	}
	store := &Store{Update: c.TCBUpdate, Client: &http.Client{Timeout: time.Duration(c.Timeout)}, Now: c.Now}
	switch {
	case c.CollateralDir != "":
		if fi, err := os.Stat(c.CollateralDir); err != nil || !fi.IsDir() {
			return nil, bad("collateral_dir %q is not a directory", c.CollateralDir)
		}
		store.Dir = c.CollateralDir
	default:
		if c.CacheDir != "" {
			if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
				return nil, bad("cache_dir: %v", err)
			}
			store.Dir, store.WriteDir = c.CacheDir, true
		}
		if c.Offline {
			if c.CacheDir == "" {
				return nil, bad("offline needs collateral_dir or cache_dir")
			}
			break
		}
		u, err := url.Parse(c.CollateralURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, bad("collateral_url %q is not an http(s) URL", c.CollateralURL)
		}
		store.URL = c.CollateralURL
	}
	opts := Options{Collateral: store, CheckRevocations: c.CheckRevocations,
		AcceptExpiredCollateral: c.AcceptExpiredCollateral, Now: c.Now}
	if c.RootCAFile != "" {
		b, err := os.ReadFile(c.RootCAFile)
		if err != nil {
			return nil, bad("root_ca_file: %v", err)
		}
		if opts.Roots, err = ParseCertificatesPEM(b); err != nil {
			return nil, bad("root_ca_file %q: %v", c.RootCAFile, err)
		}
		sdk.Logger().Warn("DCAP: trusting root CAs from root_ca_file instead of Intel's", "file", c.RootCAFile, "subject", opts.Roots[0].Subject.String())
	}
	if !c.CheckRevocations {
		sdk.Logger().Warn("DCAP: revocation of PCK certificates is not checked (check_revocations is false)")
	}
	return New(opts), nil
}

// Roots returns the trusted roots of v.
func (v *Verifier) Roots() []*x509.Certificate { return v.trusted }

// DecodeBase64 decodes a base64 field of evidence the way trustee does
// (standard alphabet, padded, canonical; no line breaks), refusing more
// than max decoded bytes before decoding.
func DecodeBase64(field, s string, max int) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(max) {
		return nil, sdk.BadEvidence("%s: %d characters is more than %d bytes can be", field, len(s), max)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, sdk.BadEvidence("%s is not standard base64", field)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, sdk.BadEvidence("%s is not standard base64: %v", field, err)
	}
	return b, nil
}
