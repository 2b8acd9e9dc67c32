// Package resource is the plugin kind that stores the secrets a guest can
// fetch, addressed as repo/type/tag.
package resource

import (
	"context"
	"regexp"
	"strings"

	"github.com/gokbs/kbs/sdk"
)

// Path addresses one resource. Every segment matches SegmentPattern, so a
// valid Path can be joined into a file path or a key without escaping.
type Path struct {
	Repo, Type, Tag string
}

// SegmentPattern is what a path segment may look like: trustee's rule. It
// rules out "", ".", "..", slashes, and anything a shell or a file system
// would treat specially.
var SegmentPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`)

// MaxSegmentLen bounds one segment, well under every file system's limit.
const MaxSegmentLen = 255

// String returns "repo/type/tag".
func (p Path) String() string { return p.Repo + "/" + p.Type + "/" + p.Tag }

// Validate reports whether every segment is valid.
func (p Path) Validate() error {
	for _, seg := range []struct{ name, v string }{{"repo", p.Repo}, {"type", p.Type}, {"tag", p.Tag}} {
		if err := ValidateSegment(seg.v); err != nil {
			return sdk.InvalidArgument("resource path %s: %v", seg.name, err)
		}
	}
	return nil
}

// ValidateSegment checks one path segment.
func ValidateSegment(s string) error {
	switch {
	case s == "":
		return sdk.InvalidArgument("empty segment")
	case len(s) > MaxSegmentLen:
		return sdk.InvalidArgument("segment longer than %d bytes", MaxSegmentLen)
	case !SegmentPattern.MatchString(s):
		return sdk.InvalidArgument("segment %q has characters outside [A-Za-z0-9_.-] or starts with '.'", s)
	}
	return nil
}

// ParsePath parses and validates "repo/type/tag".
func ParsePath(s string) (Path, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Path{}, sdk.InvalidArgument("resource path %q: want exactly three segments repo/type/tag", s)
	}
	p := Path{Repo: parts[0], Type: parts[1], Tag: parts[2]}
	if err := p.Validate(); err != nil {
		return Path{}, err
	}
	return p, nil
}

// Backend stores resources.
//
// Errors: sdk.NotFound for a missing resource; sdk.InvalidArgument for an
// invalid path; sdk.Unsupported for an operation the backend does not allow
// (a read-only backend's Put); sdk.Unavailable when the store is down.
// Implementations validate every path they are given, even though the host
// validates too.
type Backend interface {
	Get(ctx context.Context, p Path) ([]byte, error)
	Put(ctx context.Context, p Path, data []byte) error
	Delete(ctx context.Context, p Path) error
	// List returns the resources of one repository, or of all of them when
	// repo is "". The order is unspecified.
	List(ctx context.Context, repo string) ([]Path, error)
}
