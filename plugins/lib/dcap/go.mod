module github.com/gokbs/kbs/plugins/lib/dcap

go 1.26.8

require github.com/gokbs/kbs/sdk v0.0.0

require github.com/google/go-tdx-guest v0.3.2-0.20250814004405-ffb0869e6f4d // indirect

replace github.com/gokbs/kbs/sdk => ../../../sdk
