package cca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// This file mints CCA tokens: with the example's keys from the evidence
// directory, and with keys of our own.

// fixedKey derives a private key from a label, so that minted tokens (and
// the claims in golden files) are the same on every run.
func fixedKey(t testing.TB, c elliptic.Curve, label string) *ecdsa.PrivateKey {
	t.Helper()
	d := sha512.Sum512([]byte(label))
	size := (c.Params().BitSize + 7) / 8
	if size > len(d) {
		t.Fatalf("no fixed key for %s", c.Params().Name)
	}
	scalar := d[:size]
	scalar[0] &= 0x7f // below the order of every NIST curve
	k, err := ecdsa.ParseRawPrivateKey(c, scalar)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwkPrivate reads a private EC JWK (cpak-priv.json, rak-priv.json).
func jwkPrivate(t testing.TB, b []byte) *ecdsa.PrivateKey {
	t.Helper()
	var j struct{ Crv, D string }
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	d, err := base64.RawURLEncoding.DecodeString(j.D)
	if err != nil || j.Crv != "P-384" {
		t.Fatalf("not a P-384 private JWK: %v", err)
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicJWK(k *ecdsa.PublicKey) map[string]string {
	b, _ := k.Bytes()
	size := (len(b) - 1) / 2
	crv := map[int]string{32: "P-256", 48: "P-384", 66: "P-521"}[size]
	return map[string]string{"kty": "EC", "crv": crv,
		"x": base64.RawURLEncoding.EncodeToString(b[1 : 1+size]), "y": base64.RawURLEncoding.EncodeToString(b[1+size:])}
}

func str(s string) *string { return &s }

func filled(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// defaultPlatform is a platform claims-set of our own.
func defaultPlatform() platformClaims {
	lc := uint64(0x3003)
	return platformClaims{
		Profile:   str(profilePlatformLegacy),
		InstID:    append([]byte{0x01}, filled(0x11, 32)...),
		ImplID:    filled(0x22, 32),
		Lifecycle: &lc,
		Config:    []byte{0xcf, 0xcf},
		SWComponents: []swComponent{
			{Type: str("RSE_BL1"), Value: filled(0x31, 32), SignerID: filled(0x41, 32), Desc: str("sha-256")},
			{Type: str("RMM"), Value: filled(0x32, 32), SignerID: filled(0x42, 32), Version: str("1.0")},
		},
		VSI:       str("https://verifier.example"),
		HashAlgID: str("sha-256"),
	}
}

// defaultRealm is a realm claims-set bound to reportData and initData.
func defaultRealm(reportData, initData []byte) realmClaims {
	rem := make([][]byte, 4)
	for i := range rem {
		rem[i] = filled(byte(0x50+i), 64)
	}
	return realmClaims{
		Challenge:       fit(reportData, 64),
		Perso:           fit(initData, 64),
		HashAlgID:       str("sha-512"),
		RIM:             filled(0x43, 64),
		REM:             rem,
		PubKeyHashAlgID: str("sha-256"),
	}
}

type minter struct {
	cpak, rak *ecdsa.PrivateKey
	// cmw mints the current format: a CMW collection (tag 907) and a
	// realm profile with the RAK as a COSE_Key.
	cmw bool
	// Overrides, applied after the RAK is bound.
	platformAlg cose.Algorithm
	realmSigner *ecdsa.PrivateKey
	mutate      func(p *platformClaims, r *realmClaims)
}

func sign1(t testing.TB, k *ecdsa.PrivateKey, alg cose.Algorithm, claims any) []byte {
	t.Helper()
	payload, err := cbor.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	if alg == 0 {
		if alg, err = algFor(&k.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	s, err := cose.NewSigner(alg, k)
	if err != nil {
		t.Fatal(err)
	}
	m := cose.NewSign1Message()
	m.Headers.Protected.SetAlgorithm(alg)
	m.Payload = payload
	if err := m.Sign(rand.Reader, nil, s); err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mint signs p and r into a CCA token, binding the RAK into p.
func (m minter) mint(t testing.TB, p platformClaims, r realmClaims) []byte {
	t.Helper()
	if m.cmw {
		ck, err := cose.NewKeyFromPublic(&m.rak.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if r.PubKey, err = ck.MarshalCBOR(); err != nil {
			t.Fatal(err)
		}
		r.Profile = str(profileRealm)
		p.Profile = str(profilePlatform)
	} else {
		b, err := m.rak.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		r.PubKey = b
	}
	h, err := hashByName(*r.PubKeyHashAlgID)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(r.PubKey)
	p.Challenge = h.Sum(nil)
	if m.mutate != nil {
		m.mutate(&p, &r)
	}
	rs := m.rak
	if m.realmSigner != nil {
		rs = m.realmSigner
	}
	pt := sign1(t, m.cpak, m.platformAlg, p)
	rt := sign1(t, rs, 0, r)
	var coll any
	if m.cmw {
		coll = cbor.Tag{Number: tagCMWCollection, Content: map[int]any{labelPlatform: []any{coapEATCWT, pt}, labelRealm: []any{coapEATCWT, rt}}}
	} else {
		coll = cbor.Tag{Number: tagLegacyCollection, Content: map[int][]byte{labelPlatform: pt, labelRealm: rt}}
	}
	b, err := cbor.Marshal(coll)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storesFor writes a trust-anchor and a reference-value store that trust
// the platform p signed by cpak, and returns the plugin settings.
func storesFor(t testing.TB, cpak *ecdsa.PublicKey, p platformClaims) []byte {
	t.Helper()
	dir := t.TempDir()
	ta := []any{map[string]any{"pkey": publicJWK(cpak), "implementation-id": hex.EncodeToString(p.ImplID), "instance-id": hex.EncodeToString(p.InstID)}}
	var sw []any
	for _, c := range p.SWComponents {
		e := map[string]any{"measurement-value": hex.EncodeToString(c.Value), "signer-id": hex.EncodeToString(c.SignerID)}
		if c.Type != nil {
			e["component-type"] = *c.Type
		}
		sw = append(sw, e)
	}
	rv := map[string]any{"platform": []any{map[string]any{
		"implementation-id": hex.EncodeToString(p.ImplID), "sw-components": sw, "platform-configuration": hex.EncodeToString(p.Config),
	}}, "realm": []any{}}
	cfg := Config{TAStore: filepath.Join(dir, "tastore.json"), RVStore: filepath.Join(dir, "rvstore.json")}
	for path, v := range map[string]any{cfg.TAStore: ta, cfg.RVStore: rv} {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(cfg)
	return b
}

// evidenceJSON wraps a token as trustee's {"token":[bytes]}.
func evidenceJSON(tok []byte) []byte {
	ints := make([]int, len(tok))
	for i, c := range tok {
		ints[i] = int(c)
	}
	b, _ := json.Marshal(map[string]any{"token": ints})
	return b
}
