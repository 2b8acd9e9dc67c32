package akv

import (
	"strings"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// MaxNameLen is Key Vault's limit on a secret name.
const MaxNameLen = 127

const hexDigits = "0123456789abcdef"

// SecretName maps a resource path to a Key Vault secret name. Key Vault
// names allow only letters, digits and dashes and compare without regard
// to case, while resource paths are case-sensitive and also use '_' and
// '.'; so lower-case letters and digits stand for themselves, every other
// byte of a segment becomes '-' and two lower-case hex digits, and the
// segments are joined by "--":
//
//	default/akv/coco_one  ->  default--akv--coco-5fone
//	prod/key/TLS.pem      ->  prod--key---54-4c-53-2epem
//
// The result contains no upper-case letter, so two paths never map to names
// that Key Vault would take for the same secret, and ParseSecretName
// inverts it. prefix (letters, digits, dashes) is prepended as is.
func SecretName(prefix string, p resource.Path) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(p.Repo) + len(p.Type) + len(p.Tag) + 4)
	b.WriteString(prefix)
	for i, seg := range [3]string{p.Repo, p.Type, p.Tag} {
		if i > 0 {
			b.WriteString("--")
		}
		for j := 0; j < len(seg); j++ {
			c := seg[j]
			if isPlain(c) {
				b.WriteByte(c)
				continue
			}
			b.WriteByte('-')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	if b.Len() > MaxNameLen {
		return "", sdk.InvalidArgument("resource %s: its Key Vault secret name would be %d characters, more than Key Vault's %d", p, b.Len(), MaxNameLen)
	}
	return b.String(), nil
}

func isPlain(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// ParseSecretName inverts SecretName. It reports false for a name that
// SecretName cannot have produced (a secret the backend does not manage):
// a missing prefix, not three segments, a malformed or needless escape, or
// a segment that is not a valid path segment. Key Vault is case-insensitive,
// so the name is compared in lower case.
func ParseSecretName(prefix, name string) (resource.Path, bool) {
	name = strings.ToLower(name)
	rest, ok := strings.CutPrefix(name, strings.ToLower(prefix))
	if !ok {
		return resource.Path{}, false
	}
	var segs []string
	var cur []byte
	for i := 0; i < len(rest); {
		c := rest[i]
		switch {
		case isPlain(c):
			cur = append(cur, c)
			i++
		case c != '-' || i+1 >= len(rest):
			return resource.Path{}, false
		case rest[i+1] == '-':
			segs = append(segs, string(cur))
			cur = nil
			i += 2
		default:
			if i+2 >= len(rest) {
				return resource.Path{}, false
			}
			hi, lo := strings.IndexByte(hexDigits, rest[i+1]), strings.IndexByte(hexDigits, rest[i+2])
			if hi < 0 || lo < 0 {
				return resource.Path{}, false
			}
			d := byte(hi<<4 | lo)
			if isPlain(d) {
				return resource.Path{}, false // SecretName never escapes these
			}
			cur = append(cur, d)
			i += 3
		}
	}
	segs = append(segs, string(cur))
	if len(segs) != 3 {
		return resource.Path{}, false
	}
	p := resource.Path{Repo: segs[0], Type: segs[1], Tag: segs[2]}
	if p.Validate() != nil {
		return resource.Path{}, false
	}
	return p, true
}
