package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/rcar"
	"github.com/gokbs/kbs/host/internal/session"
)

// fixedSessions hands every attest the same authed session, so that the
// fuzzer, which cannot guess a random nonce, reaches the key, runtime-data,
// init-data and evidence parsing behind the nonce check.
type fixedSessions struct{}

const fuzzNonce = "4XhPmk0mY7DqkuFZ3/eZoOlN5Qc3tZxXlYqbdmHJvDk="

func (fixedSessions) Create(context.Context, *session.Session) error { return nil }
func (fixedSessions) Get(context.Context, string) (*session.Session, error) {
	return nil, session.ErrNotFound
}
func (fixedSessions) ConsumeNonce(_ context.Context, id string) (*session.Session, error) {
	return &session.Session{ID: id, TEE: "sample", Nonce: fuzzNonce, HashAlg: "sha384", ExpiresAt: time.Now().Add(time.Hour)}, nil
}
func (fixedSessions) Attest(context.Context, string, string) error { return nil }
func (fixedSessions) Delete(context.Context, string) error         { return nil }

func fuzzService() *Service {
	pl := &fakePlugins{v: fakeVerifier{}, backend: fakeBackend{}}
	return &Service{Plugins: pl, Sessions: fixedSessions{}, Tokens: fakeTokens{}, Appraiser: fakeAppraiser{},
		ResourcePolicy: fakePolicy{allow: true}, SessionTimeout: time.Minute}
}

// checkClassified: every failure of the protocol is a classified KBS error
// with a detail, never a bare error (which would be a 500).
func checkClassified(t *testing.T, err error) {
	t.Helper()
	var ke *kbserr.Error
	if !errors.As(err, &ke) {
		t.Fatalf("unclassified error %T: %v", err, err)
	}
	if ke.Detail == "" || ke.Variant == "" {
		t.Fatalf("error without a detail or type: %+v", ke)
	}
	if ke.Kind == kbserr.Internal {
		t.Fatalf("request input caused an internal error: %v", err)
	}
}

// FuzzAuth: any auth body gives a challenge or a classified 4xx error.
//
//	go test -run=^$ -fuzz=FuzzAuth -fuzztime=10s ./internal/protocol
func FuzzAuth(f *testing.F) {
	for _, seed := range []string{
		`{"version":"0.4.0","tee":"sample","extra-params":""}`,
		`{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha384"]}}`,
		`{"version":"0.4.0","tee":"azsnpvtpm","extra-params":""}`,
		`{"version":"0.1.0","tee":"sample"}`,
		`{"version":"0.4.0","version":"0.4.0","tee":"sample"}`,
		`{"version":"0.4.0","tee":"sample\u0000"}`,
		`{"version":1e999}`, `[[[[[[[[[[]]]]]]]]]]`, "\xff\xfe", `null`,
	} {
		f.Add([]byte(seed))
	}
	s := fuzzService()
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, sess, err := s.Auth(context.Background(), body)
		if err != nil {
			checkClassified(t, err)
			return
		}
		if ch == nil || sess == nil || len(ch.Nonce) != 44 || !session.ValidID(sess.ID) {
			t.Fatalf("auth succeeded with challenge %+v session %+v", ch, sess)
		}
	})
}

// fuzzGuestKey is the guest key of the attest seeds (a test key, fixed so
// that every fuzzing process builds the same seeds).
const fuzzGuestKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMnIb3Hm7mDRCxQ7+
nnRdPgJ3eekzEhUf1Um9uELuamWhRANCAAQw8uQsASuqFHNETLn240X5UOJDUGXb
GPPlaeyqRqxw4NJYYGBhzYB9OhHq5Yd8ukD7ovNRrzY+alpO3sb2artQ
-----END PRIVATE KEY-----`

// FuzzAttest: any attestation body, for a session whose nonce it may know,
// gives a token or a classified 4xx error: the key, runtime data,
// init-data, additional evidence and evidence are all guest input.
//
//	go test -run=^$ -fuzz=FuzzAttest -fuzztime=10s ./internal/protocol
func FuzzAttest(f *testing.F) {
	k, err := guest.ParsePEM([]byte(fuzzGuestKey), "")
	if err != nil {
		f.Fatal(err)
	}
	good := attestSeed(fuzzNonce, k, "", nil)
	f.Add(good)
	f.Add(attestSeed(fuzzNonce, k, `{"sampledevice":{"svn":"1","report_data":"AA=="}}`, nil))
	f.Add(attestSeed(fuzzNonce, k, "", &InitData{Format: "toml", Body: "algorithm = \"sha384\"\nversion = \"0.1.0\"\n[data]\n\"a.rego\" = \"x\"\n"}))
	f.Add(attestSeed("other", k, "", nil))
	var m map[string]any
	_ = json.Unmarshal(good, &m)
	m["runtime-data"].(map[string]any)["tee-pubkey"] = map[string]any{"kty": "RSA", "alg": "RSA1_5", "n": "AQAB", "e": "AQAB"}
	b, _ := json.Marshal(m)
	f.Add(b)
	for _, seed := range []string{`{}`, `{"runtime-data":null}`, `{"tee-evidence":{"primary_evidence":null}}`, `[`, `{"runtime-data":{"nonce":1}}`} {
		f.Add([]byte(seed))
	}
	s := fuzzService()
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := s.Attest(context.Background(), session.NewID(), body)
		if err != nil {
			checkClassified(t, err)
			return
		}
		if tok == "" {
			t.Fatal("attest succeeded without a token")
		}
	})
}

// attestSeed is a sample attestation bound to nonce and k.
func attestSeed(nonce string, k *guest.Key, additional string, initData *InitData) []byte {
	jwk, _ := k.PublicJWKJSON()
	d, _ := rcar.Primary(nonce, jwk, additional).Digest("sha384")
	att := map[string]any{
		"runtime-data": map[string]any{"nonce": nonce, "tee-pubkey": jwk},
		"tee-evidence": map[string]any{"primary_evidence": guest.NewSampleEvidence(d).JSON(), "additional_evidence": additional},
	}
	if initData != nil {
		att["init-data"] = initData
	}
	b, _ := json.Marshal(att)
	return b
}

// FuzzParseResourcePath: a path either parses into three valid segments
// or is refused as InvalidRequestPath.
//
//	go test -run=^$ -fuzz=FuzzParseResourcePath -fuzztime=10s ./internal/protocol
func FuzzParseResourcePath(f *testing.F) {
	for _, seed := range []string{"default/key/one", "a/b/c/d", "../../etc/passwd", "default/%2e%2e/x", "a//b", "a/b/.c", "", "a/b/c\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParseResourcePath(raw)
		if err != nil {
			var ke *kbserr.Error
			if !errors.As(err, &ke) || ke.Variant != kbserr.InvalidRequestPath {
				t.Fatalf("%q: error %v is not InvalidRequestPath", raw, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%q parsed into an invalid path %+v: %v", raw, p, err)
		}
		if p.String() != raw {
			t.Fatalf("%q parsed into %q", raw, p.String())
		}
	})
}

// FuzzNoDuplicateKeys: the hand-written walk agrees with one built on
// encoding/json's tokenizer on every valid JSON document.
//
//	go test -run=^$ -fuzz=FuzzNoDuplicateKeys -fuzztime=10s ./internal/protocol
func FuzzNoDuplicateKeys(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"A":2}`, `{"runtime-data":{"x":"\"","x":1}}`, `{"a":"\\","b":[{"a":1}],"c":{"a":{"a":1}}}`,
		` { "runtime-data" : { "nonce" : [ "}" ] } , "tee-evidence" : { } } `, `{"t\u0065e":1,"tee":2}`, `[]`, `"x"`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	nested := []string{"runtime-data", "tee-evidence", "init-data"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		got := noDuplicateKeys(data, nested...)
		want := referenceDuplicateKeys(data, nested)
		if (got == nil) != (want == nil) {
			t.Fatalf("%q: walk says %v, tokenizer says %v", data, got, want)
		}
	})
}

func referenceDuplicateKeys(raw []byte, nested []string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[strings.ToLower(key)] {
			return errors.New("repeated")
		}
		seen[strings.ToLower(key)] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if slices.Contains(nested, key) {
			if err := referenceDuplicateKeys(v, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
