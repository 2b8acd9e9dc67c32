package akv

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

func TestSecretName(t *testing.T) {
	cases := []struct {
		name, prefix string
		p            resource.Path
		want         string
	}{
		{"plain", "", resource.Path{Repo: "default", Type: "key", Tag: "one"}, "default--key--one"},
		{"underscore", "", resource.Path{Repo: "default", Type: "akv", Tag: "coco_one"}, "default--akv--coco-5fone"},
		{"upper case and dot", "", resource.Path{Repo: "prod", Type: "key", Tag: "TLS.pem"}, "prod--key---54-4c-53-2epem"},
		{"leading dash", "", resource.Path{Repo: "-r", Type: "t", Tag: "x"}, "-2dr--t--x"},
		{"dash inside", "", resource.Path{Repo: "a-b", Type: "t", Tag: "x"}, "a-2db--t--x"},
		{"prefix", "kbs-", resource.Path{Repo: "default", Type: "key", Tag: "one"}, "kbs-default--key--one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SecretName(c.prefix, c.p)
			if err != nil || got != c.want {
				t.Fatalf("SecretName(%v) = %q, %v; want %q", c.p, got, err, c.want)
			}
			back, ok := ParseSecretName(c.prefix, got)
			if !ok || back != c.p {
				t.Fatalf("ParseSecretName(%q) = %v, %v; want %v", got, back, ok, c.p)
			}
			// Key Vault may hand the name back in another case.
			if back, ok := ParseSecretName(c.prefix, strings.ToUpper(got)); !ok || back != c.p {
				t.Fatalf("ParseSecretName(upper %q) = %v, %v", got, back, ok)
			}
		})
	}
}

func TestSecretNameErrors(t *testing.T) {
	long := strings.Repeat("a", 60)
	for _, c := range []struct {
		name string
		p    resource.Path
	}{
		{"invalid segment", resource.Path{Repo: "..", Type: "k", Tag: "x"}},
		{"slash", resource.Path{Repo: "a/b", Type: "k", Tag: "x"}},
		{"too long for key vault", resource.Path{Repo: long, Type: long, Tag: "xxxxxxxxx"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := SecretName("", c.p); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("SecretName(%v) error = %v, want invalid_argument", c.p, err)
			}
		})
	}
}

func TestParseSecretNameRefusesForeignNames(t *testing.T) {
	for _, name := range []string{
		"coco-one",            // one segment
		"a--b",                // two segments
		"a--b--c--d",          // four
		"a--b--c-",            // dangling dash
		"a--b--c-5",           // short escape
		"a--b--c-zz",          // not hex
		"a--b--c-61",          // needless escape of 'a': not canonical
		"a--b--",              // empty tag
		"a--b---2e",           // tag "." is not a valid segment
		"a--b---2ex",          // tag ".x" starts with a dot
		"a--b--c-2f",          // tag "c/" has a slash
		"other-default--k--x", // wrong prefix (with prefix kbs-)
	} {
		prefix := ""
		if strings.HasPrefix(name, "other-") {
			prefix = "kbs-"
		}
		if p, ok := ParseSecretName(prefix, name); ok {
			t.Errorf("ParseSecretName(%q) = %v, want refused", name, p)
		}
	}
}

// TestSecretNameIsInjective draws random paths that differ only in case
// and punctuation and checks that no two share a name, compared as Key
// Vault compares them (case-insensitively).
func TestSecretNameIsInjective(t *testing.T) {
	const alphabet = "aAbB09_-."
	r := rand.New(rand.NewPCG(1, 2))
	seg := func() string {
		for {
			b := make([]byte, 1+r.IntN(4))
			for i := range b {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
			if resource.ValidateSegment(string(b)) == nil {
				return string(b)
			}
		}
	}
	seen := map[string]resource.Path{}
	for range 20000 {
		p := resource.Path{Repo: seg(), Type: seg(), Tag: seg()}
		name, err := SecretName("", p)
		if err != nil {
			t.Fatal(err)
		}
		key := strings.ToLower(name)
		if other, ok := seen[key]; ok && other != p {
			t.Fatalf("%v and %v both map to %q", p, other, name)
		}
		seen[key] = p
		if back, ok := ParseSecretName("", name); !ok || back != p {
			t.Fatalf("round trip of %v via %q = %v, %v", p, name, back, ok)
		}
		for _, c := range name {
			if !(c == '-' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				t.Fatalf("name %q has %q, outside Key Vault's alphabet", name, c)
			}
		}
	}
}
