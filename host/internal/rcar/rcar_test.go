package rcar

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type digestGolden struct {
	Nonce              string            `json:"nonce"`
	TEEPubKey          json.RawMessage   `json:"tee-pubkey"`
	AdditionalEvidence string            `json:"additional-evidence"`
	PrimaryCanonical   string            `json:"primary-canonical"`
	Primary            map[string]string `json:"primary"`
	Device             map[string]string `json:"device"`
	Additional         map[string]string `json:"additional"`
}

func loadGolden(t *testing.T) digestGolden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "runtime-digests.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g digestGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// The attestation service's own test vector.
func TestCanonicalASVector(t *testing.T) {
	c, err := Canonical(json.RawMessage(`{"b": 1, "a": "test", "c": {"d": "e"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(c) != `{"a":"test","b":1,"c":{"d":"e"}}` {
		t.Errorf("canonical = %s", c)
	}
	d, err := Sum("sha384", c)
	if err != nil {
		t.Fatal(err)
	}
	const want = "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"
	if hex.EncodeToString(d) != want {
		t.Errorf("digest = %x, want %s", d, want)
	}
}

func TestRuntimeDataDigest(t *testing.T) {
	g := loadGolden(t)
	// The same key as a guest might lay it out: other member order and spacing.
	reordered := json.RawMessage(`{ "y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps", "x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
		"kty":"EC", "alg":"ECDH-ES+A256KW", "crv":"P-256" }`)
	tests := []struct {
		name string
		rd   RuntimeData
		want map[string]string
	}{
		{"primary", Primary(g.Nonce, g.TEEPubKey, ""), g.Primary},
		{"primary reordered key", Primary(g.Nonce, reordered, ""), g.Primary},
		{"device", Device(g.Nonce, g.TEEPubKey), g.Device},
		{"with additional evidence", Primary(g.Nonce, g.TEEPubKey, g.AdditionalEvidence), g.Additional},
	}
	for _, tt := range tests {
		for _, alg := range []string{"sha256", "sha384", "sha512"} {
			t.Run(tt.name+"/"+alg, func(t *testing.T) {
				d, err := tt.rd.Digest(alg)
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(d); got != tt.want[alg] {
					t.Errorf("digest = %s, want %s", got, tt.want[alg])
				}
			})
		}
	}
	t.Run("default is sha384", func(t *testing.T) {
		d, err := Primary(g.Nonce, g.TEEPubKey, "").Digest("")
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(d); got != g.Primary["sha384"] {
			t.Errorf("digest = %s", got)
		}
	})
	t.Run("canonical bytes", func(t *testing.T) {
		c, err := Primary(g.Nonce, g.TEEPubKey, "").Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if string(c) != g.PrimaryCanonical {
			t.Errorf("canonical = %s", c)
		}
	})
	t.Run("html characters are not escaped", func(t *testing.T) {
		c, err := Primary(g.Nonce, g.TEEPubKey, g.AdditionalEvidence).Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(c), `<&>`) {
			t.Errorf("canonical = %s", c)
		}
	})
}

func TestRuntimeDataErrors(t *testing.T) {
	tests := []struct {
		name string
		rd   RuntimeData
		alg  string
		is   error
	}{
		{"sm3", Primary("n", json.RawMessage(`{}`), ""), "sm3", ErrUnsupportedHash},
		{"unknown hash", Primary("n", json.RawMessage(`{}`), ""), "md5", ErrUnsupportedHash},
		{"sha-384 spelling", Primary("n", json.RawMessage(`{}`), ""), "sha-384", ErrUnsupportedHash},
		{"no key", Primary("n", nil, ""), "sha384", nil},
		{"bad key json", Primary("n", json.RawMessage(`{"kty":`), ""), "sha384", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.rd.Digest(tt.alg)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestHash(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"", 48}, {"sha384", 48}, {"SHA384", 48}, {"Sha256", 32}, {"sha256", 32}, {"sha512", 64}, {"sm3", 0}, {"sha1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Sum(tt.name, []byte("x"))
			if tt.size == 0 {
				if !errors.Is(err, ErrUnsupportedHash) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || len(d) != tt.size {
				t.Fatalf("len %d, err %v", len(d), err)
			}
		})
	}
}

func TestInitData(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "initdata.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// sha*sum of the file.
	sums := map[string]string{
		"sha256": "31ecf67ed9d5ae3256f0cc095469d52e8c945c008a91d2a7034d1c878baaf428",
		"sha384": "ba3e23747275312a5ba41caabc663fcf46677dc3c89e3284e636f0290c0b9e548f480d6f67dc56d6f3b5a711be84d52e",
		"sha512": "e0d1284dacfec36469e47845acab095bf3a663e6b245d93354eb1f5766fce3d9a7ebae9df050568e820d2b0b79a2f5537113aef62eb44a118e1cbd3cc478d5ad",
	}
	t.Run("digest of the whole text", func(t *testing.T) {
		d, alg, err := InitDataDigest("toml", string(body))
		if err != nil {
			t.Fatal(err)
		}
		if alg != "sha384" || hex.EncodeToString(d) != sums["sha384"] {
			t.Errorf("alg %s digest %x", alg, d)
		}
	})
	for _, alg := range []string{"sha256", "sha512"} {
		t.Run("algorithm "+alg, func(t *testing.T) {
			// The digest covers the edited text, so compare with a hash of it.
			edited := strings.Replace(string(body), `"sha384"`, `"`+alg+`"`, 1)
			d, got, err := InitDataDigest("toml", edited)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Sum(alg, []byte(edited))
			if got != alg || hex.EncodeToString(d) != hex.EncodeToString(want) {
				t.Errorf("alg %s digest %x", got, d)
			}
		})
	}
	t.Run("claims", func(t *testing.T) {
		id, err := ParseInitData("toml", string(body))
		if err != nil {
			t.Fatal(err)
		}
		if id.Version != "0.1.0" || len(id.Data) != 4 {
			t.Errorf("version %q data %d", id.Version, len(id.Data))
		}
		got, err := json.Marshal(id.Claims())
		if err != nil {
			t.Fatal(err)
		}
		wantRaw, err := os.ReadFile(filepath.Join("testdata", "initdata.claims.json"))
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		_ = json.Unmarshal(got, &a)
		if err := json.Unmarshal(wantRaw, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("claims = %s", got)
		}
	})
}

func TestInitDataClaimsFallbacks(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"cdh.toml not toml stays a string", `"cdh.toml" = "[[["`, `{"cdh.toml":"[[["}`},
		{"rego without policy_data stays", `"policy.rego" = "package agent_policy"`, `{"policy.rego":"package agent_policy"}`},
		{"policy_data not last stays", `"policy.rego" = "policy_data := {\"a\":1}\nx := 1"`, `{"policy.rego":"policy_data := {\"a\":1}\nx := 1"}`},
		{"policy_data last", `"policy.rego" = "p := 1\npolicy_data := {\"a\": 1}\n"`, `{"agent_policy_claims":{"a":1}}`},
		{"empty data", ``, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseInitData("toml", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"+tt.data+"\n")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(id.Claims())
			if string(got) != tt.want {
				t.Errorf("claims = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestInitDataErrors(t *testing.T) {
	const ok = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
	tests := []struct {
		name, format, body string
	}{
		{"format json", "json", ok},
		{"format empty", "", ok},
		{"format TOML", "TOML", ok},
		{"not toml", "toml", "version = "},
		{"missing algorithm", "toml", "version = \"0.1.0\"\n[data]\n"},
		{"missing version", "toml", "algorithm = \"sha256\"\n[data]\n"},
		{"missing data", "toml", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n"},
		{"uppercase algorithm", "toml", strings.Replace(ok, "sha256", "SHA256", 1)},
		{"dashed algorithm", "toml", strings.Replace(ok, "sha256", "sha-256", 1)},
		{"sm3", "toml", strings.Replace(ok, "sha256", "sm3", 1)},
		{"algorithm not a string", "toml", strings.Replace(ok, `"sha256"`, "256", 1)},
		{"data value not a string", "toml", ok + "a = 1\n"},
		{"data nested table", "toml", ok + "[data.x]\na = \"b\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := InitDataDigest(tt.format, tt.body); !errors.Is(err, ErrInitData) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func BenchmarkPrimaryDigest(b *testing.B) {
	key := json.RawMessage(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0","y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}`)
	rd := Primary("q0Zbyr3Hw7B0pTcsJ2p1mX3eYgQ9t3d0xQ0b8Jx3tqU=", key, "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rd.Digest("sha384"); err != nil {
			b.Fatal(err)
		}
	}
}
