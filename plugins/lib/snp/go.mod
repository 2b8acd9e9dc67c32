module github.com/gokbs/kbs/plugins/lib/snp

go 1.26.8

require github.com/gokbs/kbs/sdk v0.0.0

require github.com/google/go-sev-guest v0.15.0 // indirect

replace github.com/gokbs/kbs/sdk => ../../../sdk
