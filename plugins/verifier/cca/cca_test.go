package cca

import (
	"context"
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	digest   = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()
	initData = func() []byte { d := sha512.Sum384([]byte("[data]\n")); return d[:] }()
)

func checkGolden(t *testing.T, name string, claims verifier.Claims) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), claims, *update)
}

func configured(t testing.TB, config []byte) *Verifier {
	t.Helper()
	v := New()
	if err := v.Configure(context.Background(), config); err != nil {
		t.Fatalf("Configure(%s): %v", config, err)
	}
	return v
}

// evidenceConfig trusts the example platform with the stores from the
// evidence directory.
func evidenceConfig(t testing.TB) []byte {
	dir := plugintest.EvidenceDir(t)
	b, _ := json.Marshal(Config{TAStore: filepath.Join(dir, "cca", "tastore.json"), RVStore: filepath.Join(dir, "cca", "rvstore.json")})
	return b
}

// The example token verifies against the example stores: CPAK signature,
// RAK signature and binding, and the platform reference values.
func TestExampleToken(t *testing.T) {
	tok := plugintest.EvidenceFile(t, "cca/cca-example-token.cbor")
	v := configured(t, evidenceConfig(t))
	parsed, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	// The example's challenge is a full 64-byte value (a SHA-512 digest).
	challenge := parsed.realm.Challenge
	claims, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: challenge, HashAlgorithm: "sha512"})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkGolden(t, "example-token", claims)

	// Its claims have the shape of trustee's cca-claims.json.
	var ref map[string]any
	if err := json.Unmarshal(plugintest.EvidenceFile(t, "cca/cca-claims.json"), &ref); err != nil {
		t.Fatal(err)
	}
	for part, keys := range ref {
		if _, ok := claims[part]; !ok {
			t.Errorf("claim %s of cca-claims.json is missing", part)
		}
		got, ok := claims[part].(map[string]any)
		if !ok {
			continue // report_data, init_data: strings
		}
		for k := range keys.(map[string]any) {
			if _, ok := got[k]; !ok {
				t.Errorf("claim %s.%s of cca-claims.json is missing", part, k)
			}
		}
	}

	t.Run("another digest", func(t *testing.T) {
		_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest})
		if !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), "challenge") {
			t.Fatalf("err = %v, want bad evidence about the challenge", err)
		}
	})
	t.Run("each flipped byte of a signed part fails", func(t *testing.T) {
		for _, off := range []int{0x40, 0x200, 0x5c0, 0x700, 0x8a0} {
			bad := append([]byte(nil), tok...)
			bad[off] ^= 0x01
			if _, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(bad), ReportData: challenge}); !errors.Is(err, sdk.ErrBadEvidence) {
				t.Errorf("byte %#x flipped: err = %v, want bad evidence", off, err)
			}
		}
	})
}

// Tokens minted with the example's CPAK and RAK, bound to our digest.
func TestMintedWithExampleKeys(t *testing.T) {
	cpak := jwkPrivate(t, plugintest.EvidenceFile(t, "cca/cpak-priv.json"))
	rak := jwkPrivate(t, plugintest.EvidenceFile(t, "cca/rak-priv.json"))
	example, err := parseToken(plugintest.EvidenceFile(t, "cca/cca-example-token.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	v := configured(t, evidenceConfig(t))
	realm := example.realm
	realm.Challenge = fit(digest, 64)
	realm.Perso = fit(initData, 64)
	for _, cmw := range []bool{false, true} {
		t.Run("cmw="+strconv.FormatBool(cmw), func(t *testing.T) {
			tok := minter{cpak: cpak, rak: rak, cmw: cmw}.mint(t, example.platform, realm)
			claims, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest, InitDataDigest: initData})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			r := claims["realm"].(map[string]any)
			if r["cca-realm-challenge"] != base64.StdEncoding.EncodeToString(fit(digest, 64)) {
				t.Errorf("challenge claim = %v", r["cca-realm-challenge"])
			}
		})
	}
	t.Run("own CPAK is not the example's trust anchor", func(t *testing.T) {
		tok := minter{cpak: fixedKey(t, elliptic.P384(), "intruder"), rak: rak}.mint(t, example.platform, realm)
		_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest})
		if !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), "platform token signature") {
			t.Fatalf("err = %v, want a bad platform signature", err)
		}
	})
}

// Tokens minted with keys of our own, in both formats, with every check
// failing once.
func TestMintedWithOwnKeys(t *testing.T) {
	cpak := fixedKey(t, elliptic.P384(), "cpak")
	rak := fixedKey(t, elliptic.P384(), "rak")
	other := fixedKey(t, elliptic.P384(), "other")
	p256 := fixedKey(t, elliptic.P256(), "cpak-p256")
	v := configured(t, storesFor(t, &cpak.PublicKey, defaultPlatform()))
	ctx := context.Background()

	for name, m := range map[string]minter{"legacy": {cpak: cpak, rak: rak}, "cmw": {cpak: cpak, rak: rak, cmw: true}} {
		t.Run(name, func(t *testing.T) {
			tok := m.mint(t, defaultPlatform(), defaultRealm(digest, initData))
			claims, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: initData})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkGolden(t, "minted-"+name, claims)
		})
	}
	t.Run("P-256 CPAK", func(t *testing.T) {
		v := configured(t, storesFor(t, &p256.PublicKey, defaultPlatform()))
		tok := minter{cpak: p256, rak: rak}.mint(t, defaultPlatform(), defaultRealm(digest, nil))
		if _, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest}); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})

	lifecycle := func(lc uint64) func(*platformClaims, *realmClaims) {
		return func(p *platformClaims, _ *realmClaims) { p.Lifecycle = &lc }
	}
	tests := map[string]struct {
		m        minter
		platform func(*platformClaims)
		reqInit  []byte
		reqData  []byte
		msg      string
	}{
		"wrong init-data": {m: minter{cpak: cpak, rak: rak}, reqInit: digest, msg: "personalization"},
		"wrong digest":    {m: minter{cpak: cpak, rak: rak}, reqData: initData, msg: "challenge"},
		"realm signed by another key": {
			m: minter{cpak: cpak, rak: rak, realmSigner: other}, msg: "realm token signature",
		},
		"RAK not bound": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.Challenge = filled(0xEE, 32) }},
			msg: "does not bind",
		},
		"RAK swapped after binding": {
			// The realm names and is signed by another key than the one
			// the platform vouched for.
			m: minter{cpak: cpak, rak: rak, realmSigner: other, mutate: func(_ *platformClaims, r *realmClaims) {
				r.PubKey, _ = other.PublicKey.Bytes()
			}},
			msg: "does not bind",
		},
		"platform alg does not match the CPAK": {m: minter{cpak: cpak, rak: rak, platformAlg: cose.AlgorithmES512}, msg: "ES384"},
		"platform signed by another key":       {m: minter{cpak: other, rak: rak}, msg: "platform token signature"},
		"unknown instance": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.InstID[1] ^= 1 }},
			msg: "no trust anchor",
		},
		"implementation id differs from the anchor's": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.ImplID = filled(0x23, 32) }},
			msg: "implementation",
		},
		"firmware measurement not in the reference values": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.SWComponents[1].Value = filled(0x99, 32) }},
			msg: "reference value",
		},
		"firmware components reordered": {
			m: minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) {
				p.SWComponents[0], p.SWComponents[1] = p.SWComponents[1], p.SWComponents[0]
			}},
			msg: "reference value",
		},
		"platform configuration changed": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.Config = []byte{0xcf} }},
			msg: "reference value",
		},
		"debug lifecycle":   {m: minter{cpak: cpak, rak: rak, mutate: lifecycle(0x5000)}, msg: "lifecycle"},
		"unknown lifecycle": {m: minter{cpak: cpak, rak: rak, mutate: lifecycle(0x2000)}, msg: "lifecycle"},
		"three REMs": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(_ *platformClaims, r *realmClaims) { r.REM = r.REM[:3] }},
			msg: "extensible",
		},
		"short challenge": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(_ *platformClaims, r *realmClaims) { r.Challenge = r.Challenge[:48] }},
			msg: "challenge",
		},
		"unknown RAK hash": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(_ *platformClaims, r *realmClaims) { r.PubKeyHashAlgID = str("md5") }},
			msg: "md5",
		},
		"unknown platform profile": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.Profile = str("http://arm.com/psa/2.0.0") }},
			msg: "profile",
		},
		"instance id not a random UEID": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.InstID[0] = 0x02 }},
			msg: "instance id",
		},
		"no software components": {
			m:   minter{cpak: cpak, rak: rak, mutate: func(p *platformClaims, _ *realmClaims) { p.SWComponents = nil }},
			msg: "software components",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := tc.m.mint(t, defaultPlatform(), defaultRealm(digest, initData))
			rd := digest
			if tc.reqData != nil {
				rd = tc.reqData
			}
			_, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: rd, InitDataDigest: tc.reqInit})
			if !errors.Is(err, sdk.ErrBadEvidence) {
				t.Fatalf("err = %v (class %q), want bad evidence", err, sdk.ClassOf(err))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

// Malformed containers, built by hand.
func TestMalformedTokens(t *testing.T) {
	cpak := fixedKey(t, elliptic.P384(), "cpak")
	rak := fixedKey(t, elliptic.P384(), "rak")
	v := configured(t, storesFor(t, &cpak.PublicKey, defaultPlatform()))
	good := minter{cpak: cpak, rak: rak}.mint(t, defaultPlatform(), defaultRealm(digest, nil))
	parsed, err := parseToken(good)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := parsed.platformMsg.MarshalCBOR()
	rt, _ := parsed.realmMsg.MarshalCBOR()
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := map[string][]byte{
		"untagged":           enc(map[int][]byte{labelPlatform: pt, labelRealm: rt}),
		"COSE tag 18":        enc(cbor.Tag{Number: 18, Content: map[int][]byte{labelPlatform: pt, labelRealm: rt}}),
		"no realm token":     enc(cbor.Tag{Number: tagLegacyCollection, Content: map[int][]byte{labelPlatform: pt}}),
		"extra label":        enc(cbor.Tag{Number: tagLegacyCollection, Content: map[int][]byte{labelPlatform: pt, labelRealm: rt, 1: {}}}),
		"CMW without coap":   enc(cbor.Tag{Number: tagCMWCollection, Content: map[int]any{labelPlatform: []any{pt}, labelRealm: []any{coapEATCWT, rt}}}),
		"CMW wrong coap":     enc(cbor.Tag{Number: tagCMWCollection, Content: map[int]any{labelPlatform: []any{60, pt}, labelRealm: []any{coapEATCWT, rt}}}),
		"legacy with arrays": enc(cbor.Tag{Number: tagLegacyCollection, Content: map[int]any{labelPlatform: []any{coapEATCWT, pt}, labelRealm: []any{coapEATCWT, rt}}}),
		"truncated":          good[:len(good)-10],
		"trailing bytes":     append(append([]byte(nil), good...), 0x00),
		"platform not COSE":  enc(cbor.Tag{Number: tagLegacyCollection, Content: map[int][]byte{labelPlatform: {0xa0}, labelRealm: rt}}),
		// A map with the platform label twice: {44234: h'', 44234: h''}.
		"duplicate label": {0xd9, 0x01, 0x8f, 0xa2, 0x19, 0xac, 0xca, 0x40, 0x19, 0xac, 0xca, 0x40},
		"empty":           {},
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest})
			if !errors.Is(err, sdk.ErrBadEvidence) {
				t.Fatalf("err = %v (class %q), want bad evidence", err, sdk.ClassOf(err))
			}
		})
	}
}

func TestEvidenceForms(t *testing.T) {
	cpak := fixedKey(t, elliptic.P384(), "cpak")
	rak := fixedKey(t, elliptic.P384(), "rak")
	v := configured(t, storesFor(t, &cpak.PublicKey, defaultPlatform()))
	tok := minter{cpak: cpak, rak: rak}.mint(t, defaultPlatform(), defaultRealm(digest, nil))
	asString, _ := json.Marshal(string(evidenceJSON(tok)))
	tests := map[string]struct {
		evidence string
		want     error
	}{
		"array of bytes":           {evidence: string(evidenceJSON(tok))},
		"inside a JSON string":     {evidence: string(asString)},
		"base64 token":             {evidence: `{"token":"` + base64.StdEncoding.EncodeToString(tok) + `"}`},
		"url-safe base64":          {evidence: `{"token":"` + base64.RawURLEncoding.EncodeToString(tok) + `"}`, want: sdk.ErrBadEvidence},
		"token false":              {evidence: `{"token":false}`, want: sdk.ErrBadEvidence},
		"byte out of range":        {evidence: `{"token":[256]}`, want: sdk.ErrBadEvidence},
		"no token":                 {evidence: `{"tok":[1]}`, want: sdk.ErrBadEvidence},
		"string that is not JSON":  {evidence: `"token"`, want: sdk.ErrBadEvidence},
		"token larger than 64 KiB": {evidence: `{"token":"` + base64.StdEncoding.EncodeToString(make([]byte, 70<<10)) + `"}`, want: sdk.ErrBadEvidence},
		"not JSON":                 {evidence: `cca`, want: sdk.ErrBadEvidence},
		"other TEE":                {evidence: string(evidenceJSON(tok)), want: sdk.ErrUnsupported},
		"no expected report data":  {evidence: string(evidenceJSON(tok)), want: sdk.ErrInvalidArgument},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := &verifier.Request{TEE: TEE, Evidence: []byte(tc.evidence), ReportData: digest}
			switch name {
			case "other TEE":
				req.TEE = "snp"
			case "no expected report data":
				req.ReportData = nil
			}
			_, err := v.Verify(context.Background(), req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (class %q), want %q", err, sdk.ClassOf(err), sdk.ClassOf(tc.want))
			}
		})
	}
	t.Run("not configured", func(t *testing.T) {
		_, err := New().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest})
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("err = %v, want unavailable", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: evidenceJSON(tok), ReportData: digest}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cpak := fixedKey(t, elliptic.P384(), "cpak")
	var good Config
	if err := json.Unmarshal(storesFor(t, &cpak.PublicKey, defaultPlatform()), &good); err != nil {
		t.Fatal(err)
	}
	jwk, _ := json.Marshal(publicJWK(&cpak.PublicKey))
	inst := "01" + strings.Repeat("11", 32)
	impl := strings.Repeat("22", 32)
	cfg := func(ta, rv string) string { b, _ := json.Marshal(Config{TAStore: ta, RVStore: rv}); return string(b) }
	tests := map[string]struct {
		config  string
		wantErr string
	}{
		"good":           {config: cfg(good.TAStore, good.RVStore)},
		"none":           {config: "", wantErr: "required"},
		"only ta_store":  {config: cfg(good.TAStore, ""), wantErr: "required"},
		"unknown key":    {config: `{"ta-store":"x"}`, wantErr: "ta-store"},
		"missing file":   {config: cfg("/no/such/file", good.RVStore), wantErr: "ta_store"},
		"empty TA store": {config: cfg(write("empty.json", "[]"), good.RVStore), wantErr: "no trust anchor"},
		"TA not JSON":    {config: cfg(write("bad.json", "{"), good.RVStore), wantErr: "ta_store"},
		"TA key not EC":  {config: cfg(write("rsa.json", `[{"pkey":{"kty":"RSA"},"implementation-id":"`+impl+`","instance-id":"`+inst+`"}]`), good.RVStore), wantErr: "EC"},
		"TA short inst":  {config: cfg(write("inst.json", `[{"pkey":`+string(jwk)+`,"implementation-id":"`+impl+`","instance-id":"01"}]`), good.RVStore), wantErr: "instance-id"},
		"TA point off curve": {
			config:  cfg(write("off.json", `[{"pkey":{"kty":"EC","crv":"P-384","x":"`+strings.Repeat("A", 64)+`","y":"`+strings.Repeat("A", 64)+`"},"implementation-id":"`+impl+`","instance-id":"`+inst+`"}]`), good.RVStore),
			wantErr: "entry 0",
		},
		"RV not hex": {config: cfg(good.TAStore, write("rv.json", `{"platform":[{"implementation-id":"zz"}]}`)), wantErr: "implementation-id"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := New().Configure(context.Background(), []byte(tc.config))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Configure: %v", err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Configure(%s) = %v, want invalid_argument mentioning %q", tc.config, err, tc.wantErr)
			}
		})
	}
}
