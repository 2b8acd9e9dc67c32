package policy

import (
	"context"
	"testing"
)

func BenchmarkAppraise(b *testing.B) {
	for _, name := range []string{"sample", "snp"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			f := newFixture(b)
			f.register(b, merge(sampleRVs, snpRVs, snpConfigRVs))
			in := claims(b, name)
			b.ReportAllocs()
			for b.Loop() {
				a, err := f.e.Appraise(ctx, "cpu", in)
				if err != nil || a.Status != StatusAffirming {
					b.Fatal(a.Status, err)
				}
			}
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	claims := earClaims([3]string{"cpu", "affirming", "snp"})
	cases := map[string]func(f *fixture){
		"default":  func(*fixture) {},
		"scoped":   func(f *fixture) { f.e.SetResourcePolicy(context.Background(), "default/key", denyByPath) },
		"by-query": func(f *fixture) { f.e.SetResourcePolicy(context.Background(), "", byQuery) },
	}
	for name, setup := range cases {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			f := newFixture(b)
			setup(f)
			plugin, path, query := "resource", resPath, map[string]string(nil)
			if name == "by-query" {
				plugin, path, query = "nebula-ca", []string{"credential"}, map[string]string{"name": "node1", "ip": "10.0.0.1/24"}
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := f.e.Allow(ctx, claims, plugin, path, query)
				if err != nil || !d.Allowed {
					b.Fatal(d, err)
				}
			}
		})
	}
	b.Run("default-parallel", func(b *testing.B) {
		ctx := context.Background()
		f := newFixture(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := f.e.Allow(ctx, claims, "resource", resPath, nil); err != nil || !d.Allowed {
					b.Error(d, err)
					return
				}
			}
		})
	})
}
