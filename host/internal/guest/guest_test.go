package guest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gokbs/kbs/host/internal/jwe"
	"github.com/gokbs/kbs/host/internal/rcar"
)

var b64 = base64.RawURLEncoding

var (
	keysOnce sync.Once
	keys     map[string][2]*Key // two keys per kind
)

func testKeys(t testing.TB) map[string][2]*Key {
	keysOnce.Do(func() {
		keys = map[string][2]*Key{}
		for _, kind := range Kinds {
			a, err := NewKey(kind)
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewKey(kind)
			if err != nil {
				t.Fatal(err)
			}
			keys[kind] = [2]*Key{a, b}
		}
	})
	return keys
}

func seal(t *testing.T, k *Key, plaintext []byte) *jwe.Response {
	t.Helper()
	raw, err := k.PublicJWKJSON()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := jwe.ParseTEEPubKey(raw)
	if err != nil {
		t.Fatalf("broker refuses the guest's JWK %s: %v", raw, err)
	}
	r, err := jwe.Seal(tk, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	ks := testKeys(t)
	for _, kind := range Kinds {
		for _, size := range []int{0, 1, 4096} {
			t.Run(fmt.Sprintf("%s/%dB", kind, size), func(t *testing.T) {
				k := ks[kind][0]
				if k.Kind() != kind {
					t.Errorf("Kind() = %s", k.Kind())
				}
				pt := bytes.Repeat([]byte{0xa5}, size)
				body, err := json.Marshal(seal(t, k, pt))
				if err != nil {
					t.Fatal(err)
				}
				got, err := k.DecryptJSON(body)
				if err != nil {
					t.Fatalf("DecryptJSON: %v", err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatal("plaintext differs")
				}
				if _, err := ks[kind][1].DecryptJSON(body); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("other key: err = %v", err)
				}
			})
		}
	}
}

func TestDefaultKind(t *testing.T) {
	k, err := NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	if k.Kind() != KindECP256 {
		t.Errorf("default kind %s", k.Kind())
	}
	if _, err := NewKey("ec-p384"); err == nil {
		t.Error("ec-p384 accepted")
	}
}

func TestPublicJWKLayout(t *testing.T) {
	ks := testKeys(t)
	pats := map[string]*regexp.Regexp{
		KindECP256:  regexp.MustCompile(`^\{"kty":"EC","crv":"P-256","alg":"ECDH-ES\+A256KW","x":"[A-Za-z0-9_-]{43}","y":"[A-Za-z0-9_-]{43}"\}$`),
		KindECP521:  regexp.MustCompile(`^\{"kty":"EC","crv":"P-521","alg":"ECDH-ES\+A256KW","x":"[A-Za-z0-9_-]{88}","y":"[A-Za-z0-9_-]{88}"\}$`),
		KindRSAOAEP: regexp.MustCompile(`^\{"kty":"RSA","alg":"RSA-OAEP-256","n":"[A-Za-z0-9_-]{342}","e":"AQAB"\}$`),
		KindRSA15:   regexp.MustCompile(`^\{"kty":"RSA","alg":"RSA1_5","n":"[A-Za-z0-9_-]{342}","e":"AQAB"\}$`),
	}
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			raw, err := ks[kind][0].PublicJWKJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !pats[kind].Match(raw) {
				t.Errorf("jwk %s", raw)
			}
		})
	}
}

// Coordinates with leading zero bytes keep their fixed size.
func TestPublicJWKFixedSize(t *testing.T) {
	for i := 0; i < 2000; i++ {
		k, err := NewKey(KindECP256)
		if err != nil {
			t.Fatal(err)
		}
		if k.ec.X.BitLen() > 248 && k.ec.Y.BitLen() > 248 {
			continue
		}
		j := k.PublicJWK()
		if len(j.X) != 43 || len(j.Y) != 43 {
			t.Fatalf("short coordinate in %+v", j)
		}
		if err := j.Validate(); err != nil {
			t.Fatal(err)
		}
		return
	}
	// About one key in 128 has a short coordinate; missing one in 2000 tries
	// has probability below 1e-6.
	t.Fatal("no key with a short coordinate in 2000 tries")
}

func TestPEMRoundTrip(t *testing.T) {
	ks := testKeys(t)
	dir := t.TempDir()
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			k := ks[kind][0]
			path := filepath.Join(dir, kind+".pem")
			if err := k.SaveFile(path); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode())
			}
			if err := k.SaveFile(path); err == nil {
				t.Error("SaveFile overwrote an existing file")
			}
			raw, _ := os.ReadFile(path)
			wantType := "PRIVATE KEY"
			if strings.HasPrefix(kind, "rsa") {
				wantType = "RSA PRIVATE KEY"
			}
			if b, _ := pem.Decode(raw); b == nil || b.Type != wantType {
				t.Errorf("PEM type, want %s", wantType)
			}
			rsaKind := ""
			if kind == KindRSA15 {
				rsaKind = KindRSA15
			}
			loaded, err := LoadFile(path, rsaKind)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := k.PublicJWKJSON()
			b, _ := loaded.PublicJWKJSON()
			if !bytes.Equal(a, b) {
				t.Errorf("public key changed: %s vs %s", a, b)
			}
			body, _ := json.Marshal(seal(t, k, []byte("x")))
			if got, err := loaded.DecryptJSON(body); err != nil || string(got) != "x" {
				t.Fatalf("loaded key: %q, %v", got, err)
			}
		})
	}
}

func TestParsePEM(t *testing.T) {
	ks := testKeys(t)
	ec := ks[KindECP256][0].ec
	rsaPriv := ks[KindRSAOAEP][0].rsa
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8RSA, _ := x509.MarshalPKCS8PrivateKey(rsaPriv)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name     string
		in       []byte
		rsaKind  string
		wantKind string
	}{
		{"sec1 ec", pemOf("EC PRIVATE KEY", sec1), "", KindECP256},
		{"pkcs8 rsa", pemOf("PRIVATE KEY", pkcs8RSA), "", KindRSAOAEP},
		{"pkcs1 rsa as rsa1_5", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaPriv)), KindRSA15, KindRSA15},
		{"ec ignores rsa kind", pemOf("EC PRIVATE KEY", sec1), KindRSA15, KindECP256},
		{"p-384", pemOf("PRIVATE KEY", p384DER), "", ""},
		{"rsa 1024", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "", ""},
		{"bad rsa kind", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaPriv)), KindECP256, ""},
		{"not pem", []byte("hello"), "", ""},
		{"certificate block", pemOf("CERTIFICATE", []byte{1}), "", ""},
		{"garbage der", pemOf("PRIVATE KEY", []byte{1, 2, 3}), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePEM(tt.in, tt.rsaKind)
			if tt.wantKind == "" {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Kind() != tt.wantKind {
				t.Errorf("kind %s", k.Kind())
			}
		})
	}
}

// manualSeal builds a response with arbitrary protected-header bytes, as a
// broker with a different JSON layout would.
func manualSeal(t *testing.T, k *Key, protectedJSON string, plaintext []byte) *jwe.Response {
	t.Helper()
	cek := make([]byte, 32)
	iv := make([]byte, 12)
	_, _ = rand.Read(cek)
	_, _ = rand.Read(iv)
	ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.rsa.PublicKey, cek, nil)
	if err != nil {
		t.Fatal(err)
	}
	protected := b64.EncodeToString([]byte(protectedJSON))
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	sealed := gcm.Seal(nil, iv, plaintext, []byte(protected))
	return &jwe.Response{Protected: protected, EncryptedKey: b64.EncodeToString(ek), IV: b64.EncodeToString(iv),
		Ciphertext: b64.EncodeToString(sealed[:len(sealed)-16]), Tag: b64.EncodeToString(sealed[len(sealed)-16:])}
}

func TestDecryptRejects(t *testing.T) {
	ks := testKeys(t)
	p256, p521 := ks[KindECP256][0], ks[KindECP521][0]
	oaep, rsa15 := ks[KindRSAOAEP][0], ks[KindRSA15][0]
	withHeader := func(r *jwe.Response, mut func(h map[string]any)) *jwe.Response {
		raw, _ := b64.DecodeString(r.Protected)
		var h map[string]any
		_ = json.Unmarshal(raw, &h)
		mut(h)
		out := *r
		b, _ := json.Marshal(h)
		out.Protected = b64.EncodeToString(b)
		return &out
	}
	edit := func(r *jwe.Response, f func(r *jwe.Response)) *jwe.Response {
		out := *r
		f(&out)
		return &out
	}
	good := seal(t, p256, []byte("secret"))
	tests := []struct {
		name string
		key  *Key
		resp *jwe.Response
		ok   bool
	}{
		{"canonical layout by hand", oaep, manualSeal(t, oaep, `{"alg":"RSA-OAEP-256","enc":"A256GCM"}`, []byte("s")), true},
		{"enc before alg", oaep, manualSeal(t, oaep, `{"enc":"A256GCM","alg":"RSA-OAEP-256"}`, []byte("s")), false},
		{"spaces in header", oaep, manualSeal(t, oaep, `{"alg": "RSA-OAEP-256", "enc": "A256GCM"}`, []byte("s")), false},
		{"extra member unsorted", oaep, manualSeal(t, oaep, `{"alg":"RSA-OAEP-256","enc":"A256GCM","zip":"x","kid":"1"}`, []byte("s")), false},
		{"extra member sorted", oaep, manualSeal(t, oaep, `{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"1","zip":"x"}`, []byte("s")), true},
		{"received aad is ignored", p256, edit(good, func(r *jwe.Response) { r.AAD = "ZXZpbA" }), true},
		{"epk on another curve", p256, seal(t, p521, []byte("x")), false},
		{"epk crv relabelled", p256, withHeader(good, func(h map[string]any) { h["epk"].(map[string]any)["crv"] = "P-521" }), false},
		{"epk missing", p256, withHeader(good, func(h map[string]any) { delete(h, "epk") }), false},
		{"epk off curve", p256, withHeader(good, func(h map[string]any) {
			h["epk"].(map[string]any)["x"] = b64.EncodeToString(append(make([]byte, 31), 1))
		}), false},
		{"enc A128GCM", p256, withHeader(good, func(h map[string]any) { h["enc"] = "A128GCM" }), false},
		{"alg of another key kind", p256, withHeader(good, func(h map[string]any) { h["alg"] = "RSA-OAEP-256" }), false},
		{"RSA1_5 to an OAEP key", oaep, seal(t, rsa15, []byte("x")), false},
		{"OAEP to an RSA1_5 key", rsa15, seal(t, oaep, []byte("x")), false},
		{"tampered ciphertext", p256, edit(good, func(r *jwe.Response) { r.Ciphertext = b64.EncodeToString([]byte("SECRET")) }), false},
		{"tampered tag", p256, edit(good, func(r *jwe.Response) { r.Tag = b64.EncodeToString(make([]byte, 16)) }), false},
		{"short iv", p256, edit(good, func(r *jwe.Response) { r.IV = b64.EncodeToString(make([]byte, 8)) }), false},
		{"padded iv", p256, edit(good, func(r *jwe.Response) { r.IV += "=" }), false},
		{"protected not json", p256, edit(good, func(r *jwe.Response) { r.Protected = b64.EncodeToString([]byte("{")) }), false},
		{"protected not b64url", p256, edit(good, func(r *jwe.Response) { r.Protected = "***" }), false},
		{"encrypted key short", p256, edit(good, func(r *jwe.Response) { r.EncryptedKey = b64.EncodeToString(make([]byte, 8)) }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.key.Decrypt(tt.resp)
			if tt.ok && err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
		})
	}
	if _, err := p256.DecryptJSON([]byte("not json")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("DecryptJSON(garbage) = %v", err)
	}
}

func TestSampleEvidence(t *testing.T) {
	k := testKeys(t)[KindECP256][0]
	jwk, _ := k.PublicJWKJSON()
	digest, err := rcar.Primary("bm9uY2U=", jwk, "").Digest("")
	if err != nil {
		t.Fatal(err)
	}
	ev := NewSampleEvidence(digest)
	var back map[string]string
	if err := json.Unmarshal(ev.JSON(), &back); err != nil {
		t.Fatal(err)
	}
	dec, err := base64.StdEncoding.DecodeString(back["report_data"])
	if err != nil || !bytes.Equal(dec, digest) || back["svn"] != "1" || len(back) != 2 {
		t.Errorf("evidence %s", ev.JSON())
	}
	if got := string(NewSampleEvidence([]byte{0xfb, 0xff}).JSON()); got != `{"svn":"1","report_data":"+/8="}` {
		t.Errorf("golden: %s", got)
	}
}

func BenchmarkDecrypt(b *testing.B) {
	ks := testKeys(b)
	for _, kind := range Kinds {
		b.Run(kind, func(b *testing.B) {
			k := ks[kind][0]
			raw, _ := k.PublicJWKJSON()
			tk, _ := jwe.ParseTEEPubKey(raw)
			r, err := jwe.Seal(tk, bytes.Repeat([]byte("s"), 1024))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := k.Decrypt(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
