package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// DecodeConfig decodes a plugin's settings strictly: an unknown key is an
// error that names it, so that a typo in the operator's configuration is
// caught at start rather than silently ignored. Empty input leaves v as is.
func DecodeConfig(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return InvalidArgument("plugin settings: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return InvalidArgument("plugin settings: trailing data after the JSON object")
	}
	return nil
}

// Configurer is implemented by plugins that take settings. The host calls
// Configure once after start (and again after every restart) before any
// other call, with the plugin's section of the host configuration as JSON.
type Configurer interface {
	Configure(ctx context.Context, config []byte) error
}

// Duration is a setting written as a Go duration string ("10s", "5m"),
// which is how operators write durations in the host's configuration.
// Decoding refuses anything that is not a duration, and negative ones; what
// zero means (off, or not allowed) is the setting's to say.
type Duration time.Duration

// UnmarshalJSON parses a duration string that is not negative.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q: want one such as \"10s\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
