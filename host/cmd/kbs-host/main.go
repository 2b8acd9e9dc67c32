// Command kbs-host is the Key Broker Service daemon. It runs the broker's
// HTTP API and supervises the verifier, resource and token plugins found
// in its plugin directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/daemon"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kbs-host:", err)
		os.Exit(1)
	}
}

type serveFlags struct {
	configPath string
	dev        bool
	devDir     string
	listen     string
	pluginDir  string
	logLevel   string
	logJSON    bool
}

func rootCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "kbs-host",
		Short: "Key Broker Service for Confidential Containers",
		Long: `kbs-host serves the KBS protocol (0.4.0) to confidential guests and the admin API
to operators, with evidence verification, resource storage and token issuing in plugins.

  kbs-host --config /etc/kbs/kbs.toml     production, from a configuration file
  kbs-host --dev                           zero setup: sample TEE, plain HTTP on 127.0.0.1:8080`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runServe(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "config", "c", os.Getenv("KBS_CONFIG_FILE"), "configuration file (TOML or YAML); env KBS_CONFIG_FILE")
	fl.BoolVar(&f.dev, "dev", false, "development mode: embedded defaults, no configuration needed")
	fl.StringVar(&f.devDir, "dev-dir", "", "dev mode: directory for keys, state and the repository (default: a new temporary directory)")
	fl.StringVar(&f.listen, "listen", "", "address to listen on (overrides http_server.sockets; dev default 127.0.0.1:8080)")
	fl.StringVar(&f.pluginDir, "plugin-dir", "", "plugin directory (overrides plugins.dir; dev default: plugins/ beside the kbs-host binary)")
	fl.StringVar(&f.logLevel, "log-level", "", "log level: trace, debug, info, warn, error (overrides log.level)")
	fl.BoolVar(&f.logJSON, "log-json", false, "log JSON lines")
	cmd.AddCommand(pluginsCmd())
	return cmd
}

// defaultGCPercent is the host's GOGC unless the environment sets GOGC.
// Most of a loaded broker's heap is its sessions (each holds its token for
// session.timeout): long-lived, pointer-free bytes that a collection marks
// cheaply. Go's default of 100 lets the heap grow to twice that before
// collecting; 50 holds a broker with 20,000 sessions some 40 MiB smaller
// for a CPU cost kbs-bench does not tell apart from its noise.
const defaultGCPercent = 50

func runServe(cmd *cobra.Command, f serveFlags) error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	cfg, err := loadConfig(&f)
	if err != nil {
		return err
	}
	level := cfg.Log.Level
	if f.logLevel != "" {
		level = f.logLevel
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "kbs",
		Level:      hclog.LevelFromString(level),
		JSONFormat: cfg.Log.JSON || f.logJSON,
		Output:     os.Stderr,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	lns, err := d.Listen()
	if err != nil {
		d.Close()
		return err
	}
	if f.dev {
		printDevBanner(cmd, cfg, f.devDir)
	}
	log.Info("kbs-host ready", "listen", cfg.HTTPServer.Sockets, "plugins", cfg.Plugins.Dir)
	return d.Serve(ctx, lns)
}

func loadConfig(f *serveFlags) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if f.dev {
		if f.configPath != "" {
			return nil, errors.New("--dev and --config exclude each other: dev mode is the embedded configuration")
		}
		if f.devDir == "" {
			if f.devDir, err = os.MkdirTemp("", "kbs-dev-"); err != nil {
				return nil, err
			}
		}
		listen := f.listen
		if listen == "" {
			listen = "127.0.0.1:8080"
		}
		pluginDir := f.pluginDir
		if pluginDir == "" {
			pluginDir = besideExecutable("plugins")
		}
		return daemon.DevConfig(daemon.DevOptions{Dir: f.devDir, Listen: listen, PluginDir: pluginDir, Environ: os.Environ()})
	}
	if f.configPath == "" {
		return nil, errors.New("no configuration: pass --config FILE (see configs/), or --dev to try the broker")
	}
	if cfg, err = config.Load(f.configPath, os.Environ()); err != nil {
		return nil, err
	}
	if f.listen != "" {
		cfg.HTTPServer.Sockets = []string{f.listen}
	}
	if f.pluginDir != "" {
		cfg.Plugins.Dir = f.pluginDir
	}
	return cfg, cfg.Validate()
}

func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), name)
}

func printDevBanner(cmd *cobra.Command, cfg *config.Config, dir string) {
	url := "http://" + cfg.HTTPServer.Sockets[0]
	repo := filepath.Join(dir, "repository")
	client := besideExecutable("kbs-client")
	fmt.Fprintf(cmd.OutOrStdout(), `
  kbs-host is running in DEVELOPMENT mode (sample TEE, plain HTTP, permissive policy).

  URL          %s
  repository   %s   (a file %s/default/key/demo is served as default/key/demo)
  state        %s
  admin token  %s/admin-token   (renewed at each start, valid 24 h)

  Try it:
    echo -n 'a secret' > %s/default/key/demo   # after: mkdir -p %s/default/key
    %s --url %s get-resource --path default/key/demo
  Admin commands:
    export KBS_ADMIN_TOKEN_FILE=%s/admin-token
    %s --url %s set-resource --path default/key/other --resource-file ./secret.bin

`, url, repo, repo, dir, dir, repo, repo, client, url, dir, client, url)
}
