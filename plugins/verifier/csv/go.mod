module github.com/gokbs/kbs/plugins/verifier/csv

go 1.26.8

require github.com/gokbs/kbs/sdk v0.0.0

require github.com/emmansun/gmsm v0.15.5 // indirect

replace github.com/gokbs/kbs/sdk => ../../../sdk
