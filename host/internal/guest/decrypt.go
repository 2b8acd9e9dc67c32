package guest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	josecipher "github.com/go-jose/go-jose/v4/cipher"

	"github.com/gokbs/kbs/host/internal/jwe"
)

// ErrDecrypt is wrapped by every failure to open a response.
var ErrDecrypt = errors.New("cannot decrypt resource")

// DecryptJSON opens a JWE response body (flattened JSON).
func (k *Key) DecryptJSON(body []byte) ([]byte, error) {
	var r jwe.Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: response is not JWE JSON: %v", ErrDecrypt, err)
	}
	return k.Decrypt(&r)
}

// Decrypt opens a JWE response as the CoCo guest does: the AAD is rebuilt
// from the parsed protected header (never the received string), the alg
// must be the one this key was exported with, an ECDH-ES epk must be on
// this key's curve, and enc must be A256GCM. A received "aad" member is
// ignored, as the guest ignores it.
func (k *Key) Decrypt(r *jwe.Response) ([]byte, error) {
	b64 := base64.RawURLEncoding.Strict()
	field := func(name, s string) ([]byte, error) {
		b, err := b64.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not unpadded base64url", ErrDecrypt, name)
		}
		return b, nil
	}
	hdrJSON, err := field("protected", r.Protected)
	if err != nil {
		return nil, err
	}
	hdr, aad, err := rebuildHeader(hdrJSON)
	if err != nil {
		return nil, err
	}
	if hdr.enc != jwe.EncA256GCM {
		return nil, fmt.Errorf("%w: enc %q", ErrDecrypt, hdr.enc)
	}
	if hdr.alg != k.alg {
		return nil, fmt.Errorf("%w: alg %q, but the key is for %q", ErrDecrypt, hdr.alg, k.alg)
	}
	encKey, err := field("encrypted_key", r.EncryptedKey)
	if err != nil {
		return nil, err
	}
	iv, err := field("iv", r.IV)
	if err != nil {
		return nil, err
	}
	ct, err := field("ciphertext", r.Ciphertext)
	if err != nil {
		return nil, err
	}
	tag, err := field("tag", r.Tag)
	if err != nil {
		return nil, err
	}

	cek, err := k.unwrap(hdr, encKey)
	if err != nil {
		return nil, err
	}
	defer clear(cek)
	if len(cek) != 32 {
		return nil, fmt.Errorf("%w: content key is %d bytes", ErrDecrypt, len(cek))
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	if len(iv) != gcm.NonceSize() || len(tag) != gcm.Overhead() {
		return nil, fmt.Errorf("%w: iv is %d bytes, tag %d", ErrDecrypt, len(iv), len(tag))
	}
	pt, err := gcm.Open(nil, iv, append(ct, tag...), aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

type header struct {
	alg, enc string
	epk      json.RawMessage
}

// rebuildHeader parses the protected header and re-serializes it as the
// CoCo guest's kbs-types ProtectedHeader does with serde_json: alg, enc,
// then the other members in sorted order (a BTreeMap), nested objects
// sorted, compact, no HTML escaping. The AAD is b64url of those bytes.
func rebuildHeader(raw []byte) (*header, []byte, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, nil, fmt.Errorf("%w: protected header is not a JSON object", ErrDecrypt)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("%w: trailing data after the protected header", ErrDecrypt)
	}
	alg, ok1 := m["alg"].(string)
	enc, ok2 := m["enc"].(string)
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("%w: protected header lacks alg or enc", ErrDecrypt)
	}
	delete(m, "alg")
	delete(m, "enc")

	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	put := func(v any) error {
		if err := e.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		return nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	buf.WriteString(`{"alg":`)
	err := put(alg)
	buf.WriteString(`,"enc":`)
	err = errors.Join(err, put(enc))
	for _, name := range names {
		buf.WriteByte(',')
		err = errors.Join(err, put(name))
		buf.WriteByte(':')
		// encoding/json writes map keys sorted at every level.
		err = errors.Join(err, put(m[name]))
	}
	buf.WriteByte('}')
	if err != nil {
		return nil, nil, fmt.Errorf("%w: protected header: %v", ErrDecrypt, err)
	}
	h := &header{alg: alg, enc: enc}
	if v, ok := m["epk"]; ok {
		h.epk, _ = json.Marshal(v)
	}
	aad := make([]byte, base64.RawURLEncoding.EncodedLen(buf.Len()))
	base64.RawURLEncoding.Encode(aad, buf.Bytes())
	return h, aad, nil
}

func (k *Key) unwrap(h *header, encKey []byte) ([]byte, error) {
	switch h.alg {
	case jwe.AlgRSAOAEP256:
		cek, err := rsa.DecryptOAEP(sha256.New(), rand.Reader, k.rsa, encKey, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: unwrap content key", ErrDecrypt)
		}
		return cek, nil
	case jwe.AlgRSA15:
		//lint:ignore SA1019 RSA1_5 is the legacy guest's choice.
		cek, err := rsa.DecryptPKCS1v15(rand.Reader, k.rsa, encKey)
		if err != nil {
			return nil, fmt.Errorf("%w: unwrap content key", ErrDecrypt)
		}
		return cek, nil
	case jwe.AlgECDHESA256KW:
		return k.unwrapECDHES(h, encKey)
	default:
		return nil, fmt.Errorf("%w: alg %q", ErrDecrypt, h.alg)
	}
}

func (k *Key) unwrapECDHES(h *header, encKey []byte) ([]byte, error) {
	if h.epk == nil {
		return nil, fmt.Errorf("%w: no epk", ErrDecrypt)
	}
	var epk struct {
		Kty, Crv, X, Y string
	}
	if err := json.Unmarshal(h.epk, &epk); err != nil {
		return nil, fmt.Errorf("%w: epk: %v", ErrDecrypt, err)
	}
	if epk.Kty != "EC" || epk.Crv != k.crv {
		return nil, fmt.Errorf("%w: epk is %s %s, the key is EC %s", ErrDecrypt, epk.Kty, epk.Crv, k.crv)
	}
	priv, err := k.ecdh()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	size := (k.ec.Curve.Params().BitSize + 7) / 8
	x, errX := base64.RawURLEncoding.Strict().DecodeString(epk.X)
	y, errY := base64.RawURLEncoding.Strict().DecodeString(epk.Y)
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, fmt.Errorf("%w: epk coordinates", ErrDecrypt)
	}
	pub, err := priv.Curve().NewPublicKey(append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("%w: epk is not on %s", ErrDecrypt, k.crv)
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: ecdh: %v", ErrDecrypt, err)
	}
	defer clear(z)
	kek := make([]byte, 32)
	defer clear(kek)
	var kdfBits [4]byte
	binary.BigEndian.PutUint32(kdfBits[:], 256)
	kdf := josecipher.NewConcatKDF(crypto.SHA256, z, lengthPrefixed(h.alg), lengthPrefixed(""), lengthPrefixed(""), kdfBits[:], nil)
	if _, err := io.ReadFull(kdf, kek); err != nil {
		return nil, fmt.Errorf("%w: kdf: %v", ErrDecrypt, err)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	cek, err := josecipher.KeyUnwrap(block, encKey)
	if err != nil {
		return nil, fmt.Errorf("%w: unwrap content key", ErrDecrypt)
	}
	return cek, nil
}

func lengthPrefixed(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}
