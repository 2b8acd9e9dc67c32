package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// ca is a test certificate authority for token signing certificates.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // PEM of cert
}

func newCA(t *testing.T, dir, name string) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	c := &ca{cert: cert, key: key, path: filepath.Join(dir, name+"-ca-cert.pem")}
	writeFile(t, c.path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return c
}

// tokenSigner writes a P-256 token key and its chain (leaf, CA) issued by
// c, and returns their paths.
func (c *ca) tokenSigner(t *testing.T, dir, name string) (keyPath, chainPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, chainPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+"-cert-chain.pem")
	writeECKey(t, keyPath, key)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})...)
	writeFile(t, chainPath, chain)
	return keyPath, chainPath
}

func writeECKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// exampleConfig writes configs/<name> with its paths moved under base,
// its address replaced by addr and the given extra replacements, so that
// the tests run the documented configurations.
func exampleConfig(t *testing.T, name, base, addr string, repl ...string) string {
	t.Helper()
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "configs", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		"/tmp/kbs-passport", base,
		"/tmp/kbs-replicas", base,
		`dir = "bin/plugins"`, `dir = "`+bins(t).pluginDir+`"`,
		`"configs/passport/`, `"`+filepath.Join(root, "configs", "passport")+"/",
		`"127.0.0.1:8080"`, `"`+addr+`"`,
		`"127.0.0.1:8081"`, `"`+addr+`"`,
	).Replace(string(raw))
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("configs/%s has no %q to replace", name, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	p := filepath.Join(base, strings.TrimSuffix(filepath.Base(name), ".toml")+"-"+strings.ReplaceAll(addr, ":", "_")+".toml")
	writeFile(t, p, []byte(s))
	return p
}

// startExample starts a broker from configs/<name>.
func startExample(t *testing.T, name, base string, env []string, repl ...string) *broker {
	t.Helper()
	addr := freeAddr(t)
	return startConfig(t, exampleConfig(t, name, base, addr, repl...), "http://"+addr, env)
}

// bearerFetch fetches path from url with tok as Bearer and decrypts it.
func bearerFetch(t *testing.T, url, path, tok string, k *guest.Key) (string, error) {
	t.Helper()
	body, err := kbsclient.New(url).GetResource(context.Background(), path, tok)
	if err != nil {
		return "", err
	}
	plain, err := k.DecryptJSON(body)
	if err != nil {
		t.Fatalf("decrypting: %v", err)
	}
	return string(plain), nil
}

// wantKBSError checks that err is a KBS error JSON answer with status and
// a type ending in variant, and a detail mentioning detail.
func wantKBSError(t *testing.T, err error, status int, variant, detail string) {
	t.Helper()
	var ke *kbsclient.Error
	if !errors.As(err, &ke) {
		t.Fatalf("error %v, want HTTP %d", err, status)
	}
	if ke.Status != status || !strings.HasPrefix(ke.Type, "https://github.com/confidential-containers/kbs/errors/") ||
		!strings.HasSuffix(ke.Type, "/"+variant) || !strings.Contains(ke.Detail, detail) {
		t.Fatalf("got %d %s %q, want %d %s mentioning %q", ke.Status, ke.Type, ke.Detail, status, variant, detail)
	}
}

// TestPassportMode runs the documented two-broker configuration: broker 1
// attests, broker 2 (no verifier, no token issuer) releases resources to
// tokens whose x5c chain reaches the trusted CA.
func TestPassportMode(t *testing.T) {
	base := t.TempDir()
	trusted := newCA(t, base, "trusted")
	keyPath, chainPath := trusted.tokenSigner(t, base, "token")
	if err := os.Rename(trusted.path, filepath.Join(base, "ca-cert.pem")); err != nil {
		t.Fatal(err)
	}
	_ = os.Rename(keyPath, filepath.Join(base, "token.key"))
	_ = os.Rename(chainPath, filepath.Join(base, "token-cert-chain.pem"))

	b1 := startExample(t, "passport/broker1.toml", base, nil)
	b2 := startExample(t, "passport/broker2.toml", base, []string{"KBS_ATTESTATION_TOKEN__LEEWAY=1s"})
	const path = "default/key/passport"
	writeFile(t, filepath.Join(base, "broker2", "repository", filepath.FromSlash(path)), []byte("passport secret"))

	t.Run("kbs-client attest on broker 1, get-resource on broker 2", func(t *testing.T) {
		dir := t.TempDir()
		keyFile, tokFile := filepath.Join(dir, "tee.key"), filepath.Join(dir, "token")
		tok, stderr, err := runClient(t, "--url", b1.URL, "attest", "--tee-key-file", keyFile)
		if err != nil {
			t.Fatalf("attest: %v: %s", err, stderr)
		}
		writeFile(t, tokFile, []byte(tok))
		out, stderr, err := runClient(t, "--url", b2.URL, "get-resource", "--path", path, "--token-file", tokFile, "--tee-key-file", keyFile)
		if err != nil || out != "passport secret" {
			t.Fatalf("get-resource = %q, %v: %s", out, err, stderr)
		}
		// Without the token broker 2 cannot help: it has no verifier.
		_, stderr, err = runClient(t, "--url", b2.URL, "get-resource", "--path", path, "--tee-key-file", keyFile)
		if err == nil || !strings.Contains(stderr, "401") {
			t.Fatalf("attesting to broker 2: %v %s, want 401", err, stderr)
		}
	})

	k, _ := guest.NewKey(guest.KindECP256)
	_, good := handshake(t, b1.URL, k)

	t.Run("untrusted issuer", func(t *testing.T) {
		// A dev broker signs with its own key and sends no x5c.
		other := startDev(t, "")
		_, tok := handshake(t, other.URL, k)
		_, err := bearerFetch(t, b2.URL, path, tok, k)
		wantKBSError(t, err, 401, "TokenVerifierError", "no trusted ES256 key")
	})
	t.Run("x5c chain to another CA", func(t *testing.T) {
		rogue := newCA(t, base, "rogue")
		rk, rc := rogue.tokenSigner(t, base, "rogue-token")
		b := startExample(t, "passport/broker1.toml", base, nil,
			filepath.Join(base, "token.key"), rk, filepath.Join(base, "token-cert-chain.pem"), rc,
			filepath.Join(base, "broker1"), filepath.Join(base, "rogue-broker"))
		_, tok := handshake(t, b.URL, k)
		_, err := bearerFetch(t, b2.URL, path, tok, k)
		wantKBSError(t, err, 401, "TokenVerifierError", "x5c chain")
	})
	t.Run("forged signature", func(t *testing.T) {
		parts := strings.Split(good, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 1
		forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
		_, err := bearerFetch(t, b2.URL, path, forged, k)
		wantKBSError(t, err, 401, "TokenVerifierError", "signature")
	})
	t.Run("another guest's key", func(t *testing.T) {
		// The token is valid, but the resource is sealed to the key in it.
		other, _ := guest.NewKey(guest.KindECP256)
		body, err := kbsclient.New(b2.URL).GetResource(context.Background(), path, good)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.DecryptJSON(body); err == nil {
			t.Fatal("a key other than the token's opened the resource")
		}
	})
	t.Run("expired", func(t *testing.T) {
		b := startExample(t, "passport/broker1.toml", base, nil,
			`duration = "5m"`, `duration = "2s"`,
			filepath.Join(base, "broker1"), filepath.Join(base, "short-broker"))
		_, tok := handshake(t, b.URL, k)
		if got, err := bearerFetch(t, b2.URL, path, tok, k); err != nil || got != "passport secret" {
			t.Fatalf("fresh short token: %q %v", got, err)
		}
		time.Sleep(3500 * time.Millisecond) // 2 s lifetime + broker 2's 1 s leeway
		_, err := bearerFetch(t, b2.URL, path, tok, k)
		wantKBSError(t, err, 401, "TokenVerifierError", "expired")
	})
	if got, err := bearerFetch(t, b2.URL, path, good, k); err != nil || got != "passport secret" {
		t.Fatalf("the good token after all cases: %q %v", got, err)
	}
}

// TestPassportRefusesToTrustNothing: broker 2 without [attestation_token]
// and without a token issuer would accept no token; it must not start.
func TestPassportRefusesToTrustNothing(t *testing.T) {
	base := t.TempDir()
	cfg := exampleConfig(t, "passport/broker2.toml", base, freeAddr(t),
		`trusted_certs_paths = ["`+base+`/ca-cert.pem"]`, `trusted_certs_paths = []`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins(t).host, "--config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("kbs-host trusting nothing: %v, want a non-zero exit\n%s", err, out)
	}
	for _, want := range []string{"would trust no attestation token", "trusted_certs_paths", "[plugins.token]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message does not mention %q:\n%s", want, out)
		}
	}
}

// jwksServer serves a JWK set over HTTPS behind OpenID discovery, and can
// be stopped and started again on the same address.
type jwksServer struct {
	addr    string
	handler http.Handler
	srv     *httptest.Server
	certPEM string // path of the server certificate, for SSL_CERT_FILE
}

func newJWKSServer(t *testing.T, jwks []byte) *jwksServer {
	t.Helper()
	j := &jwksServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"jwks_uri": "https://" + j.addr + "/jwks.json"})
	})
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	j.handler = mux
	j.start(t, "127.0.0.1:0")
	j.addr = j.srv.Listener.Addr().String()
	j.certPEM = filepath.Join(t.TempDir(), "jwks-server.pem")
	writeFile(t, j.certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: j.srv.Certificate().Raw}))
	t.Cleanup(j.stop)
	return j
}

func (j *jwksServer) start(t *testing.T, addr string) {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	j.srv = httptest.NewUnstartedServer(j.handler)
	j.srv.Listener.Close()
	j.srv.Listener = l
	j.srv.StartTLS()
}

func (j *jwksServer) stop() {
	if j.srv != nil {
		j.srv.CloseClientConnections()
		j.srv.Close()
		j.srv = nil
	}
}

// jwksOf derives the public JWK set of an EC private key file, as the
// token plugin publishes it (kid = RFC 7638 thumbprint).
func jwksOf(t *testing.T, keyPath string) []byte {
	t.Helper()
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: &k.(*ecdsa.PrivateKey).PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, _ := pub.Thumbprint(crypto.SHA256)
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	out, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	return out
}

// TestPassportJWKS: broker 2 trusts broker 1's JWK set at an https URL
// (found through OpenID discovery). While the endpoint is down and the key
// is not cached, tokens get a clear 503; once it is back they are
// accepted; a later outage does not matter while the cached keys are
// fresh.
func TestPassportJWKS(t *testing.T) {
	base := t.TempDir()
	trusted := newCA(t, base, "trusted")
	keyPath, chainPath := trusted.tokenSigner(t, base, "token")
	_ = os.Rename(keyPath, filepath.Join(base, "token.key"))
	_ = os.Rename(chainPath, filepath.Join(base, "token-cert-chain.pem"))
	b1 := startExample(t, "passport/broker1.toml", base, nil)

	js := newJWKSServer(t, jwksOf(t, filepath.Join(base, "token.key")))
	js.stop() // down from the start: broker 2 has never seen the key
	b2 := startExample(t, "passport/broker2.toml", base,
		[]string{"SSL_CERT_FILE=" + js.certPEM, "KBS_ATTESTATION_TOKEN__JWKS_MIN_REFRESH=1s", "KBS_ATTESTATION_TOKEN__JWKS_TIMEOUT=1s"},
		`trusted_certs_paths = ["`+base+`/ca-cert.pem"]`, `trusted_jwk_sets = ["https://`+js.addr+`"]`)
	const path = "default/key/jwks"
	writeFile(t, filepath.Join(base, "broker2", "repository", filepath.FromSlash(path)), []byte("jwks secret"))

	k, _ := guest.NewKey(guest.KindECP256)
	_, tok := handshake(t, b1.URL, k)

	start := time.Now()
	_, err := bearerFetch(t, b2.URL, path, tok, k)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the answer with the JWKS endpoint down took %v", took)
	}
	wantKBSError(t, err, 503, "TokenVerifierError", "cannot verify the token now")

	js.start(t, js.addr)
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err = bearerFetch(t, b2.URL, path, tok, k)
		if err == nil || time.Now().After(deadline) {
			break
		}
		wantKBSError(t, err, 503, "TokenVerifierError", "cannot verify the token now")
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || got != "jwks secret" {
		t.Fatalf("after the JWKS endpoint came back: %q %v", got, err)
	}
	t.Logf("accepted %v after the JWKS endpoint came back (jwks_min_refresh 1s)", time.Since(deadline.Add(-10*time.Second)).Round(time.Millisecond))

	js.stop()
	if got, err := bearerFetch(t, b2.URL, path, tok, k); err != nil || got != "jwks secret" {
		t.Fatalf("with the endpoint down again but the key cached: %q %v", got, err)
	}
}
