package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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
