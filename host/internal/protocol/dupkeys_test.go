package protocol

import (
	"strings"
	"testing"
)

func TestNoDuplicateKeys(t *testing.T) {
	nested := []string{"runtime-data", "tee-evidence"}
	tests := map[string]struct {
		json    string
		wantErr string
	}{
		"distinct":                   {`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":1}]}`, ""},
		"top level":                  {`{"tee":"snp","tee":"sample"}`, `"tee" appears twice`},
		"escaped equal":              {`{"tee":"snp","t\u0065e":"sample"}`, `"tee" appears twice`},
		"in a checked member":        {`{"runtime-data":{"nonce":"a","nonce":"b"}}`, `runtime-data: member "nonce" appears twice`},
		"in evidence (verifier's)":   {`{"tee-evidence":{"primary_evidence":{"svn":1,"svn":2}}}`, ""},
		"in an unchecked member":     {`{"other":{"x":1,"x":2}}`, ""},
		"not an object":              {`[1,1]`, ""},
		"escaped quotes in values":   {`{"a":"x\"}","b":{"c":"\\"},"a":1}`, `"a" appears twice`},
		"nested arrays and spaces":   {` { "a" : [ {"b":[1,2]} , "]" ] , "c" : true , "d" : null } `, ""},
		"empty object":               {`{}`, ""},
		"nested repeat after arrays": {`{"runtime-data":{"k":[{"nonce":1}],"nonce":"a","NONCE":"b"}}`, `runtime-data: member "NONCE" appears twice`},
		"case differs":               {`{"tee":"a","TEE":"b"}`, `"TEE" appears twice`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := noDuplicateKeys([]byte(tc.json), nested...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
