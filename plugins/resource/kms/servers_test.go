package kms_test

import (
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// findTool looks for a program in PATH, then in GOPATH/bin (where `go
// install` puts it).
func findTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

const localKMSInstall = "go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"

// Keys seeded into local-kms.
const (
	awsRegion  = "eu-west-2"
	awsAccount = "111122223333"
	awsKey1    = "bc436485-5092-42b8-92a3-0aa8b93536dc"
	awsKey2    = "49c5492b-b1bc-42a8-9a5c-b2015e810c1c"
	awsAlias   = "alias/kbs"
)

func awsARN(id string) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", awsRegion, awsAccount, id)
}

const seed = `Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: ` + awsKey1 + `
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
      - Metadata:
          KeyId: ` + awsKey2 + `
        BackingKeys:
          - 614e645267556b58703273357638792f423f4528472b4b6250655368566d5971
Aliases:
  - AliasName: ` + awsAlias + `
    TargetKeyId: ` + awsKey1 + `
`

// localKMS is a running local-kms, a server of the AWS KMS API.
type localKMS struct {
	URL string
	cmd *exec.Cmd
}

// startLocalKMS runs local-kms on a free port with its database in a
// temporary directory, or skips the test when it is not installed.
func startLocalKMS(t *testing.T) *localKMS {
	t.Helper()
	bin := findTool("local-kms")
	if bin == "" {
		t.Skipf("local-kms is not installed; install it with: %s", localKMSInstall)
	}
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedFile, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(bin)
	// It binds 0.0.0.0:PORT; the tests only talk to 127.0.0.1.
	cmd.Env = []string{"PORT=" + port, "KMS_DATA_PATH=" + filepath.Join(dir, "data"), "KMS_SEED_PATH=" + seedFile,
		"KMS_REGION=" + awsRegion, "KMS_ACCOUNT_ID=" + awsAccount}
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k := &localKMS{URL: "http://127.0.0.1:" + port, cmd: cmd}
	t.Cleanup(k.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("local-kms did not listen on %s: %v\n%s", port, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (k *localKMS) stop() {
	if k.cmd.ProcessState == nil {
		k.cmd.Process.Kill()
		k.cmd.Wait()
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

const (
	softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"
	hsmToken      = "kbs-test"
	hsmPIN        = "1234-never-logged"
)

// softHSM is one SoftHSM2 token for the whole test binary: the PKCS#11
// library reads its configuration once per process.
type softHSM struct {
	conf, pinFile string
}

var (
	hsmOnce sync.Once
	hsm     *softHSM
	hsmErr  string
	hsmDir  string
)

// startSoftHSM initialises the token (once), or skips the test when
// SoftHSM2 is not installed.
func startSoftHSM(t *testing.T) *softHSM {
	t.Helper()
	hsmOnce.Do(func() {
		util := findTool("softhsm2-util")
		if util == "" {
			hsmErr = "softhsm2-util is not installed; install it with: apt-get install -y softhsm2"
			return
		}
		if _, err := os.Stat(softHSMModule); err != nil {
			hsmErr = softHSMModule + " is missing; install it with: apt-get install -y softhsm2"
			return
		}
		dir, err := os.MkdirTemp("", "kbs-softhsm-")
		if err != nil {
			hsmErr = err.Error()
			return
		}
		hsmDir = dir
		tokens := filepath.Join(dir, "tokens")
		os.Mkdir(tokens, 0o700)
		conf := filepath.Join(dir, "softhsm2.conf")
		os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		pinFile := filepath.Join(dir, "pin")
		os.WriteFile(pinFile, []byte(hsmPIN+"\n"), 0o600)
		cmd := exec.Command(util, "--init-token", "--free", "--label", hsmToken, "--pin", hsmPIN, "--so-pin", "5678")
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			hsmErr = fmt.Sprintf("softhsm2-util --init-token: %v\n%s", err, out)
			return
		}
		// For the library loaded into this process (by the tests and by
		// the plugin served in-process).
		os.Setenv("SOFTHSM2_CONF", conf)
		hsm = &softHSM{conf: conf, pinFile: pinFile}
	})
	if hsm == nil {
		if strings.Contains(hsmErr, "not installed") || strings.Contains(hsmErr, "missing") {
			t.Skip(hsmErr)
		}
		t.Fatal(hsmErr)
	}
	return hsm
}

// newKey creates an AES-256 key labelled label on the token.
func (h *softHSM) newKey(t *testing.T, label string) {
	t.Helper()
	c, err := crypto11.Configure(&crypto11.Config{Path: softHSMModule, TokenLabel: hsmToken, Pin: hsmPIN})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := []byte(label)
	if _, err := c.GenerateSecretKeyWithLabel(id, []byte(label), 256, crypto11.CipherAES); err != nil {
		t.Fatal(err)
	}
}

// deleteKey removes the key labelled label from the token.
func (h *softHSM) deleteKey(t *testing.T, label string) {
	t.Helper()
	c, err := crypto11.Configure(&crypto11.Config{Path: softHSMModule, TokenLabel: hsmToken, Pin: hsmPIN})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k, err := c.FindKey(nil, []byte(label))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(); err != nil {
		t.Fatal(err)
	}
}
