package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// noDuplicateKeys refuses a JSON object that repeats a member, at its top
// level and inside the members named in nested. encoding/json keeps the
// last of two equal keys, and matches names regardless of case, where
// trustee's serde refuses a repeated member and matches case exactly: a
// guest, a proxy and the broker could each read a different message from
// the same bytes. Names are therefore compared case-folded. Evidence is
// left to its verifier. raw has already been decoded, so it is valid JSON.
func noDuplicateKeys(raw []byte, nested ...string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object: nothing to repeat
	}
	seen := make(map[string]bool, 4)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		folded := strings.ToLower(key)
		if seen[folded] {
			return fmt.Errorf("member %q appears twice", key)
		}
		seen[folded] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if slices.Contains(nested, key) {
			if err := noDuplicateKeys(v); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	return nil
}
