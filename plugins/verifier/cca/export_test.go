package cca

import (
	"crypto/elliptic"
	"testing"
)

// Minted returns a token minted with keys of our own, bound to reportData
// and initData, and the settings that trust it.
func Minted(t testing.TB, reportData, initData []byte) (evidence, config []byte) {
	cpak := fixedKey(t, elliptic.P384(), "cpak")
	rak := fixedKey(t, elliptic.P384(), "rak")
	tok := minter{cpak: cpak, rak: rak, cmw: true}.mint(t, defaultPlatform(), defaultRealm(reportData, initData))
	return evidenceJSON(tok), storesFor(t, &cpak.PublicKey, defaultPlatform())
}
