package csv

import "testing"

// Chain exposes a generated chain to the black-box tests.
type Chain struct {
	HRKPath, Chip string
	c             *testChain
}

func NewChain(t testing.TB) *Chain {
	c := newTestChain(t)
	return &Chain{HRKPath: c.hrkPath, Chip: c.chip, c: c}
}

// Evidence is version 1 evidence carrying its HSK/CEK.
func (c *Chain) Evidence(t testing.TB, reportData []byte) []byte {
	return c.c.evidence(t, reportData, evidenceOpts{withHSKCEK: true})
}
