package snp

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestMembers(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"empty", ` { } `, map[string]string{}},
		{"escaped key", `{"\u0076mpl":1}`, map[string]string{"vmpl": "1"}},
		{"strings with brackets and quotes", `{"a":"}]\"{[","b":[1,{"c":"]"}],"d":{"e":[]}}`, map[string]string{"a": `"}]\"{["`, "b": `[1,{"c":"]"}]`, "d": `{"e":[]}`}},
		{"whitespace", "{\n\t\"a\" :\r 1 ,\"b\":null\n}", map[string]string{"a": "1", "b": "null"}},
		{"repeated key keeps the last", `{"a":1,"a":2}`, map[string]string{"a": "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := members([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tc.want) {
				t.Fatalf("members = %q, want %q", m, tc.want)
			}
			for k, v := range tc.want {
				if string(m[k]) != v {
					t.Errorf("member %q = %q, want %q", k, m[k], v)
				}
			}
		})
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":1`, `{"a":1 "b":2}`, `{1:2}`, `{"a":"x}`} {
		if _, err := members([]byte(bad)); err == nil {
			t.Errorf("members(%q) accepted", bad)
		}
	}
}

func TestParseUint(t *testing.T) {
	tests := []struct {
		in   string
		bits int
		want uint64
		ok   bool
	}{
		{"0", 8, 0, true}, {"255", 8, 255, true}, {"256", 8, 0, false},
		{"4294967295", 32, 4294967295, true}, {"4294967296", 32, 0, false},
		{"18446744073709551615", 64, 18446744073709551615, true}, {"18446744073709551616", 64, 0, false},
		{"99999999999999999999", 64, 0, false}, {"123456789012345678901", 64, 0, false},
		{"01", 8, 0, false}, {"-1", 8, 0, false}, {"-0", 8, 0, false}, {"1.0", 8, 0, false}, {"1e2", 8, 0, false},
		{`"1"`, 8, 0, false}, {"", 8, 0, false}, {"true", 8, 0, false},
	}
	for _, tc := range tests {
		got, ok := parseUint([]byte(tc.in), tc.bits)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseUint(%q, %d) = %d, %v; want %d, %v", tc.in, tc.bits, got, ok, tc.want, tc.ok)
		}
	}
}

func TestByteArray(t *testing.T) {
	for in, want := range map[string][]byte{`[]`: {}, ` [ 0 , 255,1 ] `: {0, 255, 1}, "[\n7\n]": {7}} {
		got, err := byteArray([]byte(in), nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("byteArray(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{`[256]`, `[-1]`, `[1.0]`, `[01]`, `[1,]`, `["1"]`, `[1e2]`, `{}`, `"AAA="`, `[[1]]`, `[null]`} {
		if _, err := byteArray([]byte(bad), nil); err == nil {
			t.Errorf("byteArray(%q) accepted", bad)
		}
	}
}

// FuzzMembers: on valid JSON objects, members agrees with encoding/json.
func FuzzMembers(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":[1,2,{"c":"d"}],"\u0065":"x\"y"}`))
	f.Add(trusteeEvidence(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		if !json.Valid(data) || json.Unmarshal(data, &want) != nil {
			return
		}
		got, err := members(data)
		if err != nil {
			t.Fatalf("members rejected a valid object: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("members = %d keys, encoding/json %d", len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("member %q = %q, encoding/json %q", k, got[k], v)
			}
		}
	})
}
