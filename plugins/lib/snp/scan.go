package snp

import (
	"encoding/json"
	"errors"
	"math"
)

// The evidence is checked once with json.Valid; its objects and arrays are
// then split with the helpers below, which rely on that validity (and
// still never index out of bounds). encoding/json would re-scan every
// nested value at each level, which made parsing cost more than the
// signature check.

var errScan = errors.New("malformed JSON")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1, nil
			}
		}
		return 0, errScan
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, err := valueEnd(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errScan
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && !isSpace(b[i]) {
		i++
	}
	return i, nil
}

// members splits a valid JSON object into its members. Keys are unescaped
// as serde does; a repeated key keeps its last value.
func members(b []byte) (map[string][]byte, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errScan
	}
	m := make(map[string][]byte, 32)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, nil
	}
	for {
		end, err := valueEnd(b, i)
		if err != nil || b[i] != '"' {
			return nil, errScan
		}
		key, err := jsonString(b[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, errScan
		}
		i = skipSpace(b, i+1)
		if end, err = valueEnd(b, i); err != nil {
			return nil, err
		}
		m[key] = b[i:end]
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, errScan
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, nil
		default:
			return nil, errScan
		}
	}
}

// elements splits a valid JSON array into its elements.
func elements(b []byte) ([][]byte, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, errScan
	}
	var out [][]byte
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return out, nil
	}
	for {
		end, err := valueEnd(b, i)
		if err != nil {
			return nil, err
		}
		out = append(out, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, errScan
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return out, nil
		default:
			return nil, errScan
		}
	}
}

// jsonString decodes a JSON string literal; only those with escapes or
// non-ASCII bytes go through encoding/json.
func jsonString(b []byte) (string, error) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", errScan
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if c == '\\' || c >= 0x80 {
			var s string
			err := json.Unmarshal(b, &s)
			return s, err
		}
	}
	return string(inner), nil
}

// parseUint reads a JSON integer literal into an unsigned value of the
// given bit size. Like serde for u8/u32/u64 it takes plain digits only: no
// sign, fraction or exponent.
func parseUint(b []byte, bits int) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	limit := uint64(math.MaxUint64) >> (64 - bits)
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
