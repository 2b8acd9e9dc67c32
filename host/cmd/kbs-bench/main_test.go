package main

import (
	"strings"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	tests := map[string]bool{
		"http://127.0.0.1:8080":     true,
		"http://127.9.9.9:1":        true,
		"http://localhost:8080":     true,
		"https://[::1]:8443":        true,
		"http://10.0.0.1:8080":      false,
		"http://kbs.example.com":    false,
		"http://0.0.0.0:8080":       false,
		"ftp://127.0.0.1":           false,
		"http://127.0.0.1.nip.io:1": false,
	}
	for url, ok := range tests {
		t.Run(url, func(t *testing.T) {
			if err := checkLoopback(url); (err == nil) != ok {
				t.Fatalf("checkLoopback(%q) = %v, want ok=%v", url, err, ok)
			}
		})
	}
}

func TestFlagsAreBounded(t *testing.T) {
	tests := map[string]struct {
		args    []string
		wantErr string
	}{
		"defaults":            {nil, ""},
		"too many guests":     {[]string{"-c", "5000"}, "-c"},
		"too many operations": {[]string{"-n", "2000000"}, "-n"},
		"too long":            {[]string{"-d", "1h"}, "-d"},
		"count, no duration":  {[]string{"-n", "10", "-d", "0"}, ""},
		"repeat":              {[]string{"-repeat", "11"}, "-repeat"},
		"floor":               {[]string{"-floor", "2m"}, "-floor"},
		"plugin calls":        {[]string{"-plugin-calls", "1000000"}, "-plugin-calls"},
		"unknown mode":        {[]string{"-mode", "storm"}, "-mode"},
		"remote broker":       {[]string{"-url", "http://192.0.2.1:8080"}, "loopback"},
		"stray argument":      {[]string{"now"}, "unexpected"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseFlags(tc.args)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := percentiles(ds)
	if l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("percentiles of 1..100 ms = %+v", l)
	}
	if (percentiles(nil) != Latency{}) {
		t.Fatal("percentiles of nothing")
	}
}

func TestTOMLValue(t *testing.T) {
	got, err := tomlValue(map[string]any{"b": true, "a": "x\"y", "c": map[string]any{"d": "e"}})
	if err != nil || got != `{ a = "x\"y", b = true, c = { d = "e" } }` {
		t.Fatalf("tomlValue = %s, %v", got, err)
	}
	if _, err := tomlValue(3); err == nil {
		t.Fatal("a number is not a setting kbs-bench writes")
	}
}

func TestFloorOperations(t *testing.T) {
	k, err := newFloorKit(nil, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.handshakeOp(); err != nil {
		t.Fatalf("handshake floor: %v", err)
	}
	if err := k.bearerOp(); err != nil {
		t.Fatalf("bearer floor: %v", err)
	}
	k.secret = []byte("other")
	if err := k.sealOpen(nil, k.key); err == nil {
		t.Fatal("sealing to no key succeeded")
	}
}
