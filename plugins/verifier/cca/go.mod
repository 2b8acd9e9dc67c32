module github.com/gokbs/kbs/plugins/verifier/cca

go 1.26.8

require github.com/gokbs/kbs/sdk v0.0.0

require (
	github.com/fxamacker/cbor/v2 v2.10.0 // indirect
	github.com/veraison/go-cose v1.3.0 // indirect
	github.com/x448/float16 v0.8.4 // indirect
)

replace github.com/gokbs/kbs/sdk => ../../../sdk
