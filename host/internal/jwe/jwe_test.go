package jwe

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	josecipher "github.com/go-jose/go-jose/v4/cipher"
	"github.com/lestrrat-go/jwx/v3/jwa"
	jwxjwe "github.com/lestrrat-go/jwx/v3/jwe"
)

var b64 = base64.RawURLEncoding

// testKey is a TEE key pair as a guest would hold it.
type testKey struct {
	kind string
	priv any // *ecdsa.PrivateKey or *rsa.PrivateKey
	jwk  []byte
	alg  jwa.KeyEncryptionAlgorithm
}

var (
	keysOnce sync.Once
	keys     map[string][2]*testKey // two independent keys per kind
)

var kinds = []string{"ec-p256", "ec-p521", "rsa-oaep-256", "rsa1_5"}

func newTestKey(t testing.TB, kind string) *testKey {
	t.Helper()
	k := &testKey{kind: kind}
	switch kind {
	case "ec-p256", "ec-p521":
		c, crv := elliptic.P256(), CurveP256
		if kind == "ec-p521" {
			c, crv = elliptic.P521(), CurveP521
		}
		priv, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		eh, err := priv.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		pt := eh.PublicKey().Bytes()
		n := (len(pt) - 1) / 2
		k.priv = priv
		k.alg = jwa.ECDH_ES_A256KW()
		k.jwk = mustJSON(t, map[string]string{"kty": "EC", "crv": crv, "alg": AlgECDHESA256KW,
			"x": b64.EncodeToString(pt[1 : 1+n]), "y": b64.EncodeToString(pt[1+n:])})
	default:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		alg, jalg := AlgRSAOAEP256, jwa.RSA_OAEP_256()
		if kind == "rsa1_5" {
			alg, jalg = AlgRSA15, jwa.RSA1_5()
		}
		k.priv = priv
		k.alg = jalg
		k.jwk = mustJSON(t, map[string]string{"kty": "RSA", "alg": alg,
			"n": b64.EncodeToString(priv.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(priv.E)).Bytes())})
	}
	return k
}

func testKeys(t testing.TB) map[string][2]*testKey {
	keysOnce.Do(func() {
		keys = map[string][2]*testKey{}
		for _, kind := range kinds {
			keys[kind] = [2]*testKey{newTestKey(t, kind), newTestKey(t, kind)}
		}
	})
	return keys
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rebuildAAD re-serializes the protected header the way the CoCo guest
// does (kbs-types ProtectedHeader: alg, enc, then a sorted map of the rest,
// serde_json compact output) and returns b64url of it.
func rebuildAAD(t *testing.T, protected string) string {
	t.Helper()
	raw, err := b64.DecodeString(protected)
	if err != nil {
		t.Fatalf("protected is not b64url: %v", err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("protected header JSON: %v", err)
	}
	alg, _ := m["alg"].(string)
	enc, _ := m["enc"].(string)
	delete(m, "alg")
	delete(m, "enc")
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	write := func(v any) {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteString(`{"alg":`)
	write(alg)
	buf.WriteString(`,"enc":`)
	write(enc)
	rest := make([]string, 0, len(m))
	for k := range m {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		buf.WriteByte(',')
		write(k)
		buf.WriteByte(':')
		write(m[k]) // maps marshal with sorted keys, like serde_json's BTreeMap
	}
	buf.WriteByte('}')
	return b64.EncodeToString(buf.Bytes())
}

func TestSealRoundTrip(t *testing.T) {
	ks := testKeys(t)
	payloads := map[string][]byte{
		"empty":  {},
		"short":  []byte("resource bytes"),
		"binary": bytes.Repeat([]byte{0, 0xff, '<', '"'}, 4096),
	}
	for _, kind := range kinds {
		for pname, plaintext := range payloads {
			t.Run(kind+"/"+pname, func(t *testing.T) {
				key := ks[kind][0]
				tk, err := ParseTEEPubKey(key.jwk)
				if err != nil {
					t.Fatalf("ParseTEEPubKey: %v", err)
				}
				resp, err := Seal(tk, plaintext)
				if err != nil {
					t.Fatalf("Seal: %v", err)
				}
				wire := mustJSON(t, resp)

				// The guest rebuilds the AAD; it must equal what was sent.
				if got := rebuildAAD(t, resp.Protected); got != resp.Protected {
					hdr, _ := b64.DecodeString(resp.Protected)
					t.Fatalf("guest-rebuilt header differs from sent header %s", hdr)
				}

				// A second implementation decrypts it.
				got, err := jwxjwe.Decrypt(wire, jwxjwe.WithKey(key.alg, key.priv))
				if err != nil {
					t.Fatalf("jwx Decrypt: %v", err)
				}
				if !bytes.Equal(got, plaintext) {
					t.Fatalf("jwx plaintext differs")
				}

				// The other key of the same kind must not open it.
				other := ks[kind][1]
				if _, err := jwxjwe.Decrypt(wire, jwxjwe.WithKey(other.alg, other.priv)); err == nil {
					t.Fatalf("decrypted with the wrong key")
				}
			})
		}
	}
}

func TestSealWireShape(t *testing.T) {
	ks := testKeys(t)
	keyLen := map[string]int{"ec-p256": 40, "ec-p521": 40, "rsa-oaep-256": 256, "rsa1_5": 256}
	coord := map[string]int{"ec-p256": 32, "ec-p521": 66}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			tk, err := ParseTEEPubKey(ks[kind][0].jwk)
			if err != nil {
				t.Fatal(err)
			}
			r1, err := Seal(tk, []byte("abc"))
			if err != nil {
				t.Fatal(err)
			}
			var members map[string]string
			if err := json.Unmarshal(mustJSON(t, r1), &members); err != nil {
				t.Fatal(err)
			}
			var names []string
			for k, v := range members {
				names = append(names, k)
				if strings.ContainsAny(v, "=+/") {
					t.Errorf("%s is not unpadded base64url: %q", k, v)
				}
			}
			sort.Strings(names)
			if got := strings.Join(names, ","); got != "ciphertext,encrypted_key,iv,protected,tag" {
				t.Errorf("members = %s", got)
			}
			dec := func(s string) []byte {
				b, err := b64.Strict().DecodeString(s)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			if n := len(dec(r1.IV)); n != 12 {
				t.Errorf("iv is %d bytes", n)
			}
			if n := len(dec(r1.Tag)); n != 16 {
				t.Errorf("tag is %d bytes", n)
			}
			if n := len(dec(r1.Ciphertext)); n != 3 {
				t.Errorf("ciphertext is %d bytes", n)
			}
			if n := len(dec(r1.EncryptedKey)); n != keyLen[kind] {
				t.Errorf("encrypted_key is %d bytes, want %d", n, keyLen[kind])
			}
			var h Header
			if err := json.Unmarshal(dec(r1.Protected), &h); err != nil {
				t.Fatal(err)
			}
			if h.Alg != tk.Alg || h.Enc != EncA256GCM {
				t.Errorf("header %+v", h)
			}
			if n, ok := coord[kind]; ok {
				if h.EPK == nil || h.EPK.Crv != tk.Crv || h.EPK.Kty != "EC" ||
					len(dec(h.EPK.X)) != n || len(dec(h.EPK.Y)) != n {
					t.Errorf("epk %+v", h.EPK)
				}
			} else if h.EPK != nil {
				t.Errorf("RSA header carries epk")
			}

			r2, err := Seal(tk, []byte("abc"))
			if err != nil {
				t.Fatal(err)
			}
			if r1.IV == r2.IV || r1.EncryptedKey == r2.EncryptedKey || r1.Ciphertext == r2.Ciphertext {
				t.Errorf("two seals share randomness")
			}
		})
	}
}

// The protected header bytes are compared with golden files: they are the
// wire contract with the guest.
func TestHeaderGolden(t *testing.T) {
	tests := []struct {
		name string
		hdr  Header
	}{
		{"kbs-types-vector", Header{Alg: "fakealg", Enc: "fakeenc"}},
		{"rsa-oaep-256", Header{Alg: AlgRSAOAEP256, Enc: EncA256GCM}},
		{"rsa1_5", Header{Alg: AlgRSA15, Enc: EncA256GCM}},
		{"ecdh-es-p256", Header{Alg: AlgECDHESA256KW, Enc: EncA256GCM, EPK: &EPK{
			Crv: CurveP256, Kty: "EC",
			X: "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
			Y: "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeHeader(&tt.hdr)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tt.name+".protected"))
			if err != nil {
				t.Fatal(err)
			}
			if got != strings.TrimSpace(string(want)) {
				raw, _ := b64.DecodeString(got)
				t.Errorf("protected = %s (%s), want %s", got, raw, want)
			}
		})
	}
}

func TestSealHeaderLayout(t *testing.T) {
	ks := testKeys(t)
	pats := map[string]*regexp.Regexp{
		"ec-p256":      regexp.MustCompile(`^\{"alg":"ECDH-ES\+A256KW","enc":"A256GCM","epk":\{"crv":"P-256","kty":"EC","x":"[A-Za-z0-9_-]{43}","y":"[A-Za-z0-9_-]{43}"\}\}$`),
		"ec-p521":      regexp.MustCompile(`^\{"alg":"ECDH-ES\+A256KW","enc":"A256GCM","epk":\{"crv":"P-521","kty":"EC","x":"[A-Za-z0-9_-]{88}","y":"[A-Za-z0-9_-]{88}"\}\}$`),
		"rsa-oaep-256": regexp.MustCompile(`^\{"alg":"RSA-OAEP-256","enc":"A256GCM"\}$`),
		"rsa1_5":       regexp.MustCompile(`^\{"alg":"RSA1_5","enc":"A256GCM"\}$`),
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			tk, err := ParseTEEPubKey(ks[kind][0].jwk)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Seal(tk, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := b64.DecodeString(r.Protected)
			if !pats[kind].Match(raw) {
				t.Errorf("header %s", raw)
			}
		})
	}
}

// concatKDF must agree with go-jose's independent ECDH-ES derivation.
func TestConcatKDFMatchesGoJose(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P521()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			a, _ := ecdsa.GenerateKey(c, rand.Reader)
			b, _ := ecdsa.GenerateKey(c, rand.Reader)
			want := josecipher.DeriveECDHES(AlgECDHESA256KW, nil, nil, a, &b.PublicKey, 32)
			ae, _ := a.ECDH()
			be, _ := b.ECDH()
			z, err := ae.ECDH(be.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if got := concatKDF(z, AlgECDHESA256KW); !bytes.Equal(got, want) {
				t.Errorf("kek %x, go-jose %x", got, want)
			}
		})
	}
}

// The KDF input layout of the protocol reference, spelled out byte by byte.
func TestConcatKDFLayout(t *testing.T) {
	z := bytes.Repeat([]byte{0xab}, 32)
	var in []byte
	in = binary.BigEndian.AppendUint32(in, 1)
	in = append(in, z...)
	in = binary.BigEndian.AppendUint32(in, 14)
	in = append(in, "ECDH-ES+A256KW"...)
	in = binary.BigEndian.AppendUint32(in, 0)
	in = binary.BigEndian.AppendUint32(in, 0)
	in = binary.BigEndian.AppendUint32(in, 256)
	want := sha256.Sum256(in)
	if got := concatKDF(z, AlgECDHESA256KW); !bytes.Equal(got, want[:]) {
		t.Errorf("kek %x, want %x", got, want)
	}
}

func TestParseTEEPubKey(t *testing.T) {
	ks := testKeys(t)
	ec := func(mut func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(ks["ec-p256"][0].jwk, &m)
		mut(m)
		return mustJSON(t, m)
	}
	rsaKey := func(mut func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(ks["rsa-oaep-256"][0].jwk, &m)
		mut(m)
		return mustJSON(t, m)
	}
	priv := ks["rsa-oaep-256"][0].priv.(*rsa.PrivateKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// A P-256 point that is not on the curve: (1, 1).
	one := b64.EncodeToString(append(make([]byte, 31), 1))

	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"ec p256", ks["ec-p256"][0].jwk, nil},
		{"ec p521", ks["ec-p521"][0].jwk, nil},
		{"rsa oaep", ks["rsa-oaep-256"][0].jwk, nil},
		{"rsa 1_5", ks["rsa1_5"][0].jwk, nil},
		{"unknown member ignored", ec(func(m map[string]any) { m["kid"] = "k1"; m["use"] = "enc" }), nil},
		{"not json", []byte(`{"kty":`), ErrInvalidKey},
		{"not an object", []byte(`["EC"]`), ErrInvalidKey},
		{"null", []byte(`null`), ErrInvalidKey},
		{"trailing data", append(ks["ec-p256"][0].jwk, []byte(` {}`)...), ErrInvalidKey},
		{"missing kty", ec(func(m map[string]any) { delete(m, "kty") }), ErrInvalidKey},
		{"kty in other case", ec(func(m map[string]any) { m["KTY"] = m["kty"]; delete(m, "kty") }), ErrInvalidKey},
		{"kty OKP", []byte(`{"kty":"OKP","crv":"X25519","alg":"ECDH-ES+A256KW","x":"AA"}`), ErrUnsupportedKey},
		{"kty AKP", []byte(`{"kty":"AKP","alg":"ML-KEM-768+A192KW","pub":"AA"}`), ErrUnsupportedKey},
		{"ec missing y", ec(func(m map[string]any) { delete(m, "y") }), ErrInvalidKey},
		{"ec x is a number", ec(func(m map[string]any) { m["x"] = 12 }), ErrInvalidKey},
		{"ec alg ECDH-ES", ec(func(m map[string]any) { m["alg"] = "ECDH-ES" }), ErrUnsupportedKey},
		{"ec alg ECDH-ES+A128KW", ec(func(m map[string]any) { m["alg"] = "ECDH-ES+A128KW" }), ErrUnsupportedKey},
		{"ec curve P-384", ec(func(m map[string]any) { m["crv"] = "P-384" }), ErrUnsupportedKey},
		{"ec x short", ec(func(m map[string]any) { m["x"] = b64.EncodeToString(make([]byte, 31)) }), ErrInvalidKey},
		{"ec x long", ec(func(m map[string]any) { m["x"] = b64.EncodeToString(make([]byte, 33)) }), ErrInvalidKey},
		{"ec x padded", ec(func(m map[string]any) { m["x"] = m["x"].(string) + "=" }), ErrInvalidKey},
		{"ec x std base64", ec(func(m map[string]any) { m["x"] = "+/" + m["x"].(string)[2:] }), ErrInvalidKey},
		{"ec point off curve", ec(func(m map[string]any) { m["x"], m["y"] = one, one }), ErrInvalidKey},
		{"ec p521 coordinates on p256", ec(func(m map[string]any) {
			var o map[string]any
			_ = json.Unmarshal(ks["ec-p521"][0].jwk, &o)
			m["x"], m["y"] = o["x"], o["y"]
		}), ErrInvalidKey},
		{"rsa alg RSA-OAEP", rsaKey(func(m map[string]any) { m["alg"] = "RSA-OAEP" }), ErrUnsupportedKey},
		{"rsa alg missing", rsaKey(func(m map[string]any) { delete(m, "alg") }), ErrInvalidKey},
		{"rsa 1024 bits", rsaKey(func(m map[string]any) { m["n"] = b64.EncodeToString(small.N.Bytes()) }), ErrInvalidKey},
		{"rsa n leading zero tolerated", rsaKey(func(m map[string]any) { m["n"] = b64.EncodeToString(append([]byte{0}, priv.N.Bytes()...)) }), nil},
		{"rsa e leading zero tolerated", rsaKey(func(m map[string]any) { m["e"] = "AAEAAQ" }), nil},
		{"rsa n too large", rsaKey(func(m map[string]any) { m["n"] = b64.EncodeToString(append([]byte{1}, make([]byte, 1024)...)) }), ErrInvalidKey},
		{"rsa n empty", rsaKey(func(m map[string]any) { m["n"] = "" }), ErrInvalidKey},
		{"rsa n even", rsaKey(func(m map[string]any) {
			n := priv.N.Bytes()
			n[len(n)-1] &^= 1
			m["n"] = b64.EncodeToString(n)
		}), ErrInvalidKey},
		{"rsa e = 1", rsaKey(func(m map[string]any) { m["e"] = "AQ" }), ErrInvalidKey},
		{"rsa e even", rsaKey(func(m map[string]any) { m["e"] = "AQAA" }), ErrInvalidKey},
		{"rsa e empty", rsaKey(func(m map[string]any) { m["e"] = "" }), ErrInvalidKey},
		{"rsa e 5 bytes", rsaKey(func(m map[string]any) { m["e"] = b64.EncodeToString([]byte{1, 0, 0, 0, 1}) }), ErrInvalidKey},
		{"rsa e 3", rsaKey(func(m map[string]any) { m["e"] = "Aw" }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseTEEPubKey(tt.in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseTEEPubKey: %v", err)
				}
				if k.pub == nil {
					t.Fatalf("key not validated")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	tests := []struct {
		name    string
		key     *TEEPubKey
		wantErr error
	}{
		{"nil", nil, ErrInvalidKey},
		{"unknown kty", &TEEPubKey{Kty: "oct", Alg: "dir"}, ErrUnsupportedKey},
		{"ec alg", &TEEPubKey{Kty: "EC", Crv: CurveP256, Alg: "ECDH-ES"}, ErrUnsupportedKey},
		{"ec bad point", &TEEPubKey{Kty: "EC", Crv: CurveP256, Alg: AlgECDHESA256KW, X: "AA", Y: "AA"}, ErrInvalidKey},
		{"rsa bad n", &TEEPubKey{Kty: "RSA", Alg: AlgRSAOAEP256, N: "AQAB", E: "AQAB"}, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Seal(tt.key, []byte("x")); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A key built by hand (not parsed) is validated by Seal itself.
func TestSealUnparsedKey(t *testing.T) {
	ks := testKeys(t)
	var k TEEPubKey
	if err := json.Unmarshal(ks["ec-p256"][0].jwk, &k); err != nil {
		t.Fatal(err)
	}
	k.pub = nil
	r, err := Seal(&k, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	key := ks["ec-p256"][0]
	if _, err := jwxjwe.Decrypt(mustJSON(t, r), jwxjwe.WithKey(key.alg, key.priv)); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSeal(b *testing.B) {
	ks := testKeys(b)
	payload := bytes.Repeat([]byte("s"), 1024)
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			tk, err := ParseTEEPubKey(ks[kind][0].jwk)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(tk, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Structural decoding accepts a key the broker cannot seal to (trustee
// accepts it at attest time too); Validate and Seal then refuse it.
// Re-marshalling yields the known members only, in the guest's order.
func TestUnmarshalThenValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		out     string
		wantErr error
	}{
		{"ec extra members dropped",
			`{"use":"enc","y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps","x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0","alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","kid":"1"}`,
			`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0","y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}`,
			nil},
		{"rsa unsupported alg",
			`{"kty":"RSA","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}`,
			`{"kty":"RSA","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}`,
			ErrUnsupportedKey},
		{"ec off curve",
			`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AQ","y":"AQ"}`,
			`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AQ","y":"AQ"}`,
			ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msg struct {
				Key TEEPubKey `json:"tee-pubkey"`
			}
			if err := json.Unmarshal([]byte(`{"tee-pubkey":`+tt.in+`}`), &msg); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if got := string(mustJSON(t, &msg.Key)); got != tt.out {
				t.Errorf("marshal = %s, want %s", got, tt.out)
			}
			err := msg.Key.Validate()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tt.wantErr)
			}
			if _, err := Seal(&msg.Key, []byte("x")); (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Seal = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
