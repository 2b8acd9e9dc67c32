module github.com/gokbs/kbs/plugins/verifier/az-tdx-vtpm

go 1.26.8

require (
	github.com/gokbs/kbs/plugins/lib/dcap v0.0.0
	github.com/gokbs/kbs/plugins/lib/vtpm v0.0.0
	github.com/gokbs/kbs/sdk v0.0.0
)

replace (
	github.com/gokbs/kbs/plugins/lib/dcap => ../../lib/dcap
	github.com/gokbs/kbs/plugins/lib/vtpm => ../../lib/vtpm
	github.com/gokbs/kbs/sdk => ../../../sdk
)
