package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/jwe"
	"github.com/gokbs/kbs/host/internal/rcar"
	"github.com/gokbs/kbs/host/internal/tokenverify"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// The floor is the work a handshake cannot avoid, done in this process
// without HTTP, plugins, sessions or policy: the guest's key generation,
// runtime-data digest and JWE decryption (the guests share the machine
// with the broker), and the broker's nonce, key parsing, digest, the
// sample verifier's checks, ES256 token signing and verification, and the
// JWE sealing (ECDH-ES key agreement, key wrap, AES-GCM). A Bearer fetch's
// floor is token verification, sealing and decryption.

// Floor is the measured floor.
type Floor struct {
	// Throughput of each mode's floor with every CPU busy, per second.
	Throughput map[string]float64 `json:"throughput_per_s"`
	// CPUPerOp is each mode's floor in CPU time per operation, in µs.
	CPUPerOp map[string]float64 `json:"cpu_us_per_op"`
	// StepMicros is each step's median cost on one CPU, in µs.
	StepMicros map[string]float64 `json:"step_us"`
	// TokenBytes is the size of the token signed and verified.
	TokenBytes int `json:"token_bytes"`

	kit *floorKit
}

// floorKit holds what the floor's operations share.
type floorKit struct {
	signer   jose.Signer
	verifier *tokenverify.Verifier
	payload  []byte // the token claims signed in a handshake
	secret   []byte
	// A guest that attested already, for the Bearer floor.
	key   *guest.Key
	token string
}

// newFloorKit signs tokens as the EAR plugin does (ES256, header jwk and
// kid). payload is a real token's claims, or nil for an EAR-shaped one.
func newFloorKit(payload, secret []byte) (*floorKit, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256)}
	kid := "bench-floor"
	hdrJWK, _ := json.Marshal(pub)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid).WithHeader("jwk", json.RawMessage(hdrJWK)))
	if err != nil {
		return nil, err
	}
	published := pub
	published.Use, published.KeyID = "sig", kid
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{published}})
	v, err := tokenverify.New(tokenverify.Config{JWKSJSON: [][]byte{jwks}})
	if err != nil {
		return nil, err
	}
	k := &floorKit{signer: signer, verifier: v, secret: secret}
	if len(payload) == 0 {
		payload = nil
	}
	if k.key, err = guest.NewKey(guest.KindECP256); err != nil {
		return nil, err
	}
	jwk, _ := k.key.PublicJWKJSON()
	if payload == nil {
		payload = earPayload(jwk)
	}
	k.payload = payload
	if k.token, err = k.sign(); err != nil {
		return nil, err
	}
	return k, nil
}

// earPayload is an EAR claims set of the shape the ear plugin issues for
// sample evidence, with a fresh exp.
func earPayload(jwk json.RawMessage) []byte {
	var key any
	_ = json.Unmarshal(jwk, &key)
	now := time.Now().Unix()
	b, _ := json.Marshal(map[string]any{
		"eat_profile": "tag:github.com,2024:confidential-containers/Trustee", "iat": now, "exp": now + 300,
		"iss": "CoCo-Attestation-Service", "ear.verifier-id": map[string]any{"developer": "https://github.com/gokbs/kbs", "build": "bench"},
		"submods": map[string]any{"cpu0": map[string]any{
			"ear.status":                 "affirming",
			"ear.trustworthiness-vector": map[string]any{"executables": 3, "hardware": 2, "configuration": 2},
			"ear.appraisal-policy-id":    "default_cpu",
			"ear.veraison.annotated-evidence": map[string]any{
				"sample":      map[string]any{"svn": "1", "launch_digest": "abcde", "debug": false, "platform_version": map[string]any{"major": 1, "minor": 4}},
				"report_data": strings.Repeat("A", 64), "runtime_data_claims": map[string]any{"nonce": strings.Repeat("n", 44), "tee-pubkey": key},
				"init_data_claims": nil,
			},
		}},
	})
	return b
}

// refreshExp gives a real token's claims a fresh exp, so that they verify.
func refreshExp(payload []byte) []byte {
	var m map[string]any
	if json.Unmarshal(payload, &m) != nil {
		return nil
	}
	m["exp"] = time.Now().Unix() + 3600
	b, _ := json.Marshal(m)
	return b
}

func (k *floorKit) sign() (string, error) {
	jws, err := k.signer.Sign(k.payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// handshakeOp is one handshake's unavoidable work, guest and broker.
func (k *floorKit) handshakeOp() error {
	ctx := context.Background()
	// Guest: its TEE key.
	key, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		return err
	}
	jwk, err := key.PublicJWKJSON()
	if err != nil {
		return err
	}
	// Broker, auth: the nonce.
	var n [32]byte
	_, _ = rand.Read(n[:])
	nonce := base64.StdEncoding.EncodeToString(n[:])
	// Guest: evidence bound to the runtime data.
	digest, err := rcar.Primary(nonce, jwk, "").Digest("sha384")
	if err != nil {
		return err
	}
	ev := guest.NewSampleEvidence(digest).JSON()
	// Broker, attest: the key, the digest, the verifier, the token.
	tee, err := jwe.ParseTEEPubKey(jwk)
	if err != nil {
		return err
	}
	want, err := rcar.Primary(nonce, jwk, "").Digest("sha384")
	if err != nil {
		return err
	}
	if _, err := sampleVerify(ctx, &verifier.Request{TEE: "sample", Evidence: ev, ReportData: want, HashAlgorithm: "sha384"}); err != nil {
		return err
	}
	tok, err := k.sign()
	if err != nil {
		return err
	}
	// Broker, resource: verify the token, seal to the key. Guest: open.
	if _, err := k.verifier.Verify(ctx, tok); err != nil {
		return err
	}
	return k.sealOpen(tee, key)
}

// bearerOp is one Bearer fetch's unavoidable work.
func (k *floorKit) bearerOp() error {
	if _, err := k.verifier.Verify(context.Background(), k.token); err != nil {
		return err
	}
	jwk, _ := k.key.PublicJWKJSON()
	tee, err := jwe.ParseTEEPubKey(jwk)
	if err != nil {
		return err
	}
	return k.sealOpen(tee, k.key)
}

func (k *floorKit) sealOpen(tee *jwe.TEEPubKey, key *guest.Key) error {
	resp, err := jwe.Seal(tee, k.secret)
	if err != nil {
		return err
	}
	pt, err := key.Decrypt(resp)
	if err != nil {
		return err
	}
	if !bytes.Equal(pt, k.secret) {
		return errors.New("floor: decrypted resource differs")
	}
	return nil
}

// throughput runs op on every CPU for d and returns operations per second
// and the CPU time per operation.
func throughput(d time.Duration, op func() error) (float64, time.Duration, error) {
	var n atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(d)
	start, cpu0 := time.Now(), selfCPU()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return 0, 0, *e
	}
	if n.Load() == 0 {
		return 0, 0, errors.New("no operation finished")
	}
	return float64(n.Load()) / time.Since(start).Seconds(), (selfCPU() - cpu0) / time.Duration(n.Load()), nil
}

// modeThroughput measures the floor of one mode now.
func (k *floorKit) modeThroughput(mode string, d time.Duration) (float64, time.Duration, error) {
	op := k.handshakeOp
	if mode == ModeBearer {
		op = k.bearerOp
	}
	return throughput(d, op)
}

// median runs op n times on one goroutine and returns its median time.
func median(n int, op func() error) (time.Duration, error) {
	ds := make([]time.Duration, n)
	for i := range ds {
		t := time.Now()
		if err := op(); err != nil {
			return 0, err
		}
		ds[i] = time.Since(t)
	}
	l := percentiles(ds)
	return time.Duration(l.P50 * float64(time.Millisecond)), nil
}

// measureFloor measures the floor of both modes for d each.
func measureFloor(payload, secret []byte, d time.Duration) (*Floor, error) {
	k, err := newFloorKit(payload, secret)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	f := &Floor{Throughput: map[string]float64{}, CPUPerOp: map[string]float64{}, StepMicros: map[string]float64{}, TokenBytes: len(k.token), kit: k}
	for _, mode := range []string{ModeHandshake, ModeBearer} {
		tp, cpu, err := k.modeThroughput(mode, d)
		if err != nil {
			return nil, fmt.Errorf("floor %s: %w", mode, err)
		}
		f.Throughput[mode], f.CPUPerOp[mode] = tp, us(cpu)
	}
	// Each step alone, for the report.
	jwk, _ := k.key.PublicJWKJSON()
	tee, _ := jwe.ParseTEEPubKey(jwk)
	digest, _ := rcar.Primary(strings.Repeat("n", 44), jwk, "").Digest("sha384")
	ev := guest.NewSampleEvidence(digest).JSON()
	resp, _ := jwe.Seal(tee, k.secret)
	steps := []struct {
		name string
		op   func() error
	}{
		{"guest key generation (P-256)", func() error { _, err := guest.NewKey(guest.KindECP256); return err }},
		{"runtime-data digest (SHA-384)", func() error { _, err := rcar.Primary(strings.Repeat("n", 44), jwk, "").Digest("sha384"); return err }},
		{"sample verifier", func() error {
			_, err := sampleVerify(context.Background(), &verifier.Request{TEE: "sample", Evidence: ev, ReportData: digest})
			return err
		}},
		{"token sign (ES256)", func() error { _, err := k.sign(); return err }},
		{"token verify (ES256)", func() error { _, err := k.verifier.Verify(context.Background(), k.token); return err }},
		{"JWE seal (ECDH-ES+A256KW, A256GCM)", func() error { _, err := jwe.Seal(tee, k.secret); return err }},
		{"JWE decrypt (guest)", func() error { _, err := k.key.Decrypt(resp); return err }},
	}
	for _, s := range steps {
		m, err := median(300, s.op)
		if err != nil {
			return nil, fmt.Errorf("floor step %s: %w", s.name, err)
		}
		f.StepMicros[s.name] = us(m)
	}
	return f, nil
}

// sampleVerify is the sample verifier's work in this process (what
// kbs-plugin-verifier-sample does per call): parse the evidence, decode
// report_data strictly, compare it in constant time, build trustee's
// sample claims. It is the in-process side of the plugin-call comparison
// and part of the floor.
func sampleVerify(_ context.Context, req *verifier.Request) (verifier.Claims, error) {
	var ev struct {
		SVN        json.RawMessage `json:"svn"`
		ReportData *string         `json:"report_data"`
	}
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, sdk.BadEvidence("sample evidence: %v", err)
	}
	var svn string
	if err := json.Unmarshal(ev.SVN, &svn); err != nil {
		var n json.Number
		if err := json.Unmarshal(ev.SVN, &n); err != nil {
			return nil, sdk.BadEvidence("sample evidence: svn: %v", err)
		}
		svn = n.String()
	}
	if ev.ReportData == nil || strings.ContainsAny(*ev.ReportData, "\r\n") {
		return nil, sdk.BadEvidence("sample evidence: report_data")
	}
	got, err := base64.StdEncoding.Strict().DecodeString(*ev.ReportData)
	if err != nil {
		return nil, sdk.BadEvidence("sample evidence: report_data: %v", err)
	}
	if subtle.ConstantTimeCompare(got, req.ReportData) != 1 {
		return nil, sdk.BadEvidence("sample evidence: report_data does not match")
	}
	return verifier.Claims{
		"svn": svn, "report_data": *ev.ReportData, "launch_digest": "abcde",
		"platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false,
	}, nil
}
