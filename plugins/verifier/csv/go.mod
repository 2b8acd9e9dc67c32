module github.com/gokbs/kbs/plugins/verifier/csv

go 1.26.8

require github.com/gokbs/kbs/sdk v0.0.0

replace github.com/gokbs/kbs/sdk => ../../../sdk
