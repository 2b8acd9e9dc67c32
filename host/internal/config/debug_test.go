package config

import (
	"strings"
	"testing"
)

func TestPerformanceSettings(t *testing.T) {
	tests := map[string]struct {
		env     []string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		"defaults": {check: func(t *testing.T, c *Config) {
			if c.Session.AuthRate != 1000 || c.Session.AuthBurst != 2000 || c.Debug.PprofListen != "" {
				t.Errorf("defaults: auth_rate %v burst %v pprof %q", c.Session.AuthRate, c.Session.AuthBurst, c.Debug.PprofListen)
			}
		}},
		"rate off":           {env: []string{"KBS_SESSION__AUTH_RATE=0", "KBS_SESSION__AUTH_BURST=0"}},
		"negative rate":      {env: []string{"KBS_SESSION__AUTH_RATE=-1"}, wantErr: "session.auth_rate"},
		"rate without burst": {env: []string{"KBS_SESSION__AUTH_RATE=5", "KBS_SESSION__AUTH_BURST=0"}, wantErr: "session.auth_burst"},
		"pprof on loopback":  {env: []string{"KBS_DEBUG__PPROF_LISTEN=127.0.0.1:6060"}},
		"pprof on localhost": {env: []string{"KBS_DEBUG__PPROF_LISTEN=localhost:6060"}},
		"pprof on ::1":       {env: []string{"KBS_DEBUG__PPROF_LISTEN=[::1]:6060"}},
		"pprof on all":       {env: []string{"KBS_DEBUG__PPROF_LISTEN=0.0.0.0:6060"}, wantErr: "not a loopback address"},
		"pprof on a name":    {env: []string{"KBS_DEBUG__PPROF_LISTEN=example.com:6060"}, wantErr: "not a loopback address"},
		"pprof without port": {env: []string{"KBS_DEBUG__PPROF_LISTEN=127.0.0.1"}, wantErr: "debug.pprof_listen"},
		"plugin gomaxprocs": {env: []string{"KBS_PLUGINS__GOMAXPROCS=3"}, check: func(t *testing.T, c *Config) {
			if c.Plugins.GOMAXPROCS != 3 {
				t.Errorf("plugins.gomaxprocs = %d", c.Plugins.GOMAXPROCS)
			}
		}},
		"negative plugin gomaxprocs": {env: []string{"KBS_PLUGINS__GOMAXPROCS=-1"}, wantErr: "plugins.gomaxprocs"},
		"unknown debug key":          {env: []string{"KBS_DEBUG__PPROF=true"}, wantErr: "pprof"},
		"fractional auth rate": {env: []string{"KBS_SESSION__AUTH_RATE=0.5"}, check: func(t *testing.T, c *Config) {
			if c.Session.AuthRate != 0.5 {
				t.Errorf("auth_rate = %v", c.Session.AuthRate)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Load(writeConfig(t, minimal), tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
