package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gokbs/kbs/host/internal/jwe"
)

// Fixed TEE keys for the fuzz targets, so that every fuzzing process opens
// what the seeds were sealed to. Test keys only.
const (
	fuzzECKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaezpm6RXYVuH6Vul
7aujkdFdgRVPo8OqEISkPQhe9W6hRANCAAQGDzhMx/3zPSg+TWvDnJCtWzjAwMsh
YkE7VafHpyOrS3iIWngUdJHPq2K60wRROppGjfeSMp45SZf0wql/PTD6
-----END PRIVATE KEY-----`
	fuzzRSAKey = `-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAtVddlNYL7Y+pe+VY32ePUB0yG9MH+eUAompx7JEM7LiyftkF
FV7IIlZWtwQsODlvHNRgEcf0v8m6xz2a0HzBoUAAEtogHrrKtc2M3QM/C5uddUXt
QQblaTSB090v56neb/q+XZdVP/dl6I2TSYuI1oVD/WzBQB64Sla85ayIA8vUKvc7
cbEE3noiTEqm9v0FGXVGb3EfxvxTT9CMLp8Gbu7AVqmzFIePy0Z49BC+0c3iCETc
+SPAICScJCfLZsfnc8wwa9pyojZmopSGuEcjLupetqRaTWfo8GP32NFbsQSQ0JUI
eKegUlrznWFji59otgRk7bX8xEmX18r+tX1ogwIDAQABAoIBAFIU9BJ5GpgSxYwD
oYkp5ohEVtiaWotl+TYLCXsjot6JsZ3SHMdyChPk0cZwmJVwhddeWAfkYufm52jk
/Szus3SKNB5UZmKSeUv2eRLXM9PMweaB2uTquq+2qSddgKATV1CHhmB1rgxQruun
HaqWAr/bPY26CvU7kn5vqXwqbryMZHj2UdW0h4y/x+xbdj1ggrZDNPOwdDun5qjR
8vxlBWLLyodxRrUYmQ5pPx5sMoiDKsvay4GL2JbzNIcd3F/EHPC5eMHycDS7ZCPX
WkVas+ygWsan7fF+RoZKIC/t5S/GHfhWNHFUWsT3eSumXFpPShmBRRqjJrqRgcKk
1kHIq7kCgYEA5yorlU3hpqPi/2Io/mh+HFfZuEcua+JKrnO5lFf7mplF0LYN4LLT
G9S+c43fLZ1kGKst3nJode201feRzKc6x9mijbSQ0CjzEmf52JawXI1sTO/uH43K
ZFO5MbYKsZ7uXKWveCtPnolIOyesxjo6t/fiXshV7F8DBNN9e88bvhkCgYEAyNLg
vfiSRVnXKxgvhXyAFznC+7N6XsSB/L1lkOuWVgHKmSeB/LDJQP/YOgJzk8dobu+F
LU5Ejyw843CDK0/JSNzl4gMjURwsCuCnybgSdNfMM1ih0JJm04OazxfYespkRYSt
AW4x7Uugq/IJEO9PQkuhAt8sb+nDaSgNErlO9vsCgYAwsYxetfobbRhK7XVvKbmu
5L6C99OKfC95Ef18hxAD39d6AG9p7qFTknvPwYnKhQXpwF04J2djt//Ito6qymsy
X+DC8s8yWf3h2a8idZOO22d9yWiiku6YNZ6kHxGfmrfhIjGVIaJy5b4mX9QgKXHn
ALtZdd/Lm7P6F0auhtD0OQKBgQCTaD6xEskDALvwlPMkz0sSQUK/EHGtKB6lzrvD
kTmrbesxWg+O1JEVFfa4Nd5yRbeBXmzp4X5vfTBAXfDaFNmRkxtmN5lvyvcFEPv4
FBXwEAqCUfeMqjmx3fL/Oeib0P2jDY0T9LfPD2kjbSh8drw91FeeTQRILVVTVaOq
77xniwKBgQDYMyLrYAGu8LogEJGJpe1pC1czvLfC+NlFxHIZtQu5drhDoTMIYfRd
2l3vlW9tJ41rt1CgajG9sio/NMfWW/EmX2tvRZDxbKZgmHhca1JkIOvvzU9d60Tb
gqtFbmW/pmGW72JCEHA0gIudlPEYChiCZLKcjZU9M61WTlK0+gGTGA==
-----END RSA PRIVATE KEY-----`
)

func fuzzKeys(f *testing.F) []*Key {
	f.Helper()
	ec, err := ParsePEM([]byte(fuzzECKey), "")
	if err != nil {
		f.Fatal(err)
	}
	oaep, err := ParsePEM([]byte(fuzzRSAKey), KindRSAOAEP)
	if err != nil {
		f.Fatal(err)
	}
	pkcs1, err := ParsePEM([]byte(fuzzRSAKey), KindRSA15)
	if err != nil {
		f.Fatal(err)
	}
	return []*Key{ec, oaep, pkcs1}
}

// FuzzDecrypt: a guest opening whatever a broker (or an attacker in the
// middle) sends never panics, and every failure wraps ErrDecrypt.
//
//	go test -run=^$ -fuzz=FuzzDecrypt -fuzztime=10s ./internal/guest
func FuzzDecrypt(f *testing.F) {
	keys := fuzzKeys(f)
	for _, k := range keys {
		resp, err := jwe.Seal(k.PublicJWK(), []byte("a resource"))
		if err != nil {
			f.Fatal(err)
		}
		body, _ := json.Marshal(resp)
		f.Add(body)
	}
	f.Add([]byte(`{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ","encrypted_key":"","iv":"","ciphertext":"","tag":""}`))
	f.Add([]byte(`{"protected":"e30","encrypted_key":"AA","iv":"AA","ciphertext":"AA","tag":"AA","aad":"AA"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, k := range keys {
			pt, err := k.DecryptJSON(body)
			if err != nil {
				if !errors.Is(err, ErrDecrypt) {
					t.Fatalf("%s: error %v does not wrap ErrDecrypt", k.Kind(), err)
				}
				continue
			}
			if pt == nil {
				t.Fatalf("%s: decrypted to nil without an error", k.Kind())
			}
		}
	})
}

// FuzzSealOpen: whatever the resource, what the broker seals the guest
// opens, byte for byte, with each key kind.
//
//	go test -run=^$ -fuzz=FuzzSealOpen -fuzztime=10s ./internal/guest
func FuzzSealOpen(f *testing.F) {
	keys := fuzzKeys(f)
	f.Add([]byte("secret"), uint8(0))
	f.Add([]byte{}, uint8(1))
	f.Add(bytes.Repeat([]byte{0xff}, 4096), uint8(2))
	f.Fuzz(func(t *testing.T, plaintext []byte, which uint8) {
		k := keys[int(which)%len(keys)]
		resp, err := jwe.Seal(k.PublicJWK(), plaintext)
		if err != nil {
			t.Fatalf("%s: seal: %v", k.Kind(), err)
		}
		pt, err := k.Decrypt(resp)
		if err != nil {
			t.Fatalf("%s: open: %v", k.Kind(), err)
		}
		if !bytes.Equal(pt, plaintext) {
			t.Fatalf("%s: opened %x, sealed %x", k.Kind(), pt, plaintext)
		}
	})
}
