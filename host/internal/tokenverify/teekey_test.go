package tokenverify

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestTEEPubKey(t *testing.T) {
	key := func(tag string) map[string]any {
		return map[string]any{"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": tag, "y": tag}
	}
	ear := map[string]any{"submods": map[string]any{"cpu0": map[string]any{
		"ear.veraison.annotated-evidence": map[string]any{"runtime_data_claims": map[string]any{"tee-pubkey": key("ear")}}}}}
	tests := []struct {
		name    string
		claims  map[string]any
		extra   []string
		wantX   string
		wantErr bool
	}{
		{"ear", ear, nil, "ear", false},
		{"legacy simple token", map[string]any{"customized_claims": map[string]any{"runtime_data": map[string]any{"tee-pubkey": key("legacy")}}}, nil, "legacy", false},
		{"ita before ear", map[string]any{
			"tdx":     map[string]any{"attester_runtime_data": map[string]any{"tee-pubkey": key("ita")}},
			"submods": ear["submods"]}, nil, "ita", false},
		{"ita vtpm", map[string]any{"tdx": map[string]any{"attester_user_data": map[string]any{"tee-pubkey": key("vtpm")}}}, nil, "vtpm", false},
		{"top level last", map[string]any{"tee-pubkey": key("top"), "submods": ear["submods"]}, nil, "ear", false},
		{"top level", map[string]any{"tee-pubkey": key("top")}, nil, "top", false},
		{"extra path first", map[string]any{"mine": map[string]any{"k": key("extra")}, "submods": ear["submods"]}, []string{"/mine/k"}, "extra", false},
		{"extra path missing falls through", ear, []string{"/nope/k"}, "ear", false},
		{"extra path escapes", map[string]any{"a/b": map[string]any{"c~d": key("esc")}}, []string{"/a~1b/c~0d"}, "esc", false},
		{"extra path array index", map[string]any{"l": []any{key("zero"), key("one")}}, []string{"/l/1"}, "one", false},
		{"extra path bad index", map[string]any{"l": []any{key("zero")}, "tee-pubkey": key("top")}, []string{"/l/01", "/l/-1", "/l/+0", "/l/1", "/l/x"}, "top", false},
		{"extra path without slash matches nothing", map[string]any{"tee-pubkey": key("top")}, []string{"tee-pubkey-x"}, "top", false},
		{"first hit not an object", map[string]any{"tee-pubkey": "AAAA", "submods": nil}, nil, "", true},
		{"missing", map[string]any{"submods": map[string]any{"cpu0": map[string]any{}}}, nil, "", true},
		{"empty claims", map[string]any{}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := TEEPubKey(tt.claims, tt.extra)
			if tt.wantErr {
				if !errors.Is(err, ErrNoTEEKey) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var k map[string]string
			if err := json.Unmarshal(raw, &k); err != nil {
				t.Fatal(err)
			}
			if k["x"] != tt.wantX {
				t.Errorf("got key %s, want x=%s", raw, tt.wantX)
			}
		})
	}
}
