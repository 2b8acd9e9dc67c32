package jwe

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseTEEPubKey: any bytes either parse into a key the broker can seal
// to, whose re-marshalled form (what the runtime data is hashed over)
// parses to the same key, or fail with ErrInvalidKey or ErrUnsupportedKey.
//
//	go test -run=^$ -fuzz=FuzzParseTEEPubKey -fuzztime=10s ./internal/jwe
func FuzzParseTEEPubKey(f *testing.F) {
	for _, seed := range []string{
		`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`,
		`{"kty":"EC","crv":"P-521","alg":"ECDH-ES+A256KW","x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk","y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}`,
		`{"kty":"RSA","alg":"RSA-OAEP-256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}`,
		`{"kty":"RSA","alg":"RSA1_5","n":"AQAB","e":"AQAB"}`,
		`{"kty":"EC","crv":"P-384","alg":"ECDH-ES+A256KW","x":"","y":""}`,
		`{"kty":"oct","k":"AAAA"}`,
		`{"kty":"EC","kty":"RSA"}`,
		`null`, `[]`, `{}`, `{"kty":1}`, "{\"kty\":\"EC\",\"crv\":\"P-256\\u0000\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseTEEPubKey(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("error %v wraps neither ErrInvalidKey nor ErrUnsupportedKey", err)
			}
			return
		}
		again, err := json.Marshal(k)
		if err != nil {
			t.Fatalf("re-marshalling a parsed key: %v", err)
		}
		k2, err := ParseTEEPubKey(again)
		if err != nil {
			t.Fatalf("the re-marshalled key %s does not parse: %v", again, err)
		}
		if b, _ := json.Marshal(k2); string(b) != string(again) {
			t.Fatalf("re-marshalling is not stable: %s then %s", again, b)
		}
		if _, err := Seal(k, []byte("resource")); err != nil {
			t.Fatalf("a key that parsed cannot be sealed to: %v", err)
		}
	})
}
