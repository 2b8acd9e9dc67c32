package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/adminauth"
)

// The keygen commands make the files a broker needs. They never replace a
// file: what exists is kept (and checked where it must match), so that a
// deployment's setup step can run at every start.

type tokenKeyFiles struct {
	key, cert, chain, caCert, caKey string
	days, caDays                    int
	subject, caSubject              string
}

func keygenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create the keys a broker needs (kept when they exist)",
	}

	var tf tokenKeyFiles
	token := &cobra.Command{
		Use:   "token --key F [--ca-cert F --ca-key F --chain F [--cert F]]",
		Short: "Create the P-256 token signing key, and optionally its certificate chain",
		Long: `Create the P-256 key that the ear token plugin signs with (signing_key_path).

With --ca-cert and --ca-key, also issue a certificate for the key from that CA
(the CA is created when neither file exists) and write the chain, leaf first,
to --chain (cert_chain_path): brokers in passport mode trust tokens whose chain
reaches ca-cert. Existing files are kept; delete the chain to renew the
certificate for the same key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return makeTokenKey(cmd.ErrOrStderr(), tf)
		},
	}
	fl := token.Flags()
	fl.StringVar(&tf.key, "key", "", "the signing key (PEM, PKCS#8)")
	fl.StringVar(&tf.cert, "cert", "", "also write the leaf certificate alone here")
	fl.StringVar(&tf.chain, "chain", "", "the certificate chain, leaf first")
	fl.StringVar(&tf.caCert, "ca-cert", "", "the CA certificate (PEM)")
	fl.StringVar(&tf.caKey, "ca-key", "", "the CA private key (PEM)")
	fl.IntVar(&tf.days, "days", 90, "validity of the token certificate, in days")
	fl.IntVar(&tf.caDays, "ca-days", 3650, "validity of a new CA, in days")
	fl.StringVar(&tf.subject, "subject", "KBS token signer", "common name of the token certificate")
	fl.StringVar(&tf.caSubject, "ca-subject", "KBS token CA", "common name of a new CA")
	_ = token.MarkFlagRequired("key")

	var dir string
	var withCA bool
	initCmd := &cobra.Command{
		Use:   "init --dir D [--ca]",
		Short: "Create every key a broker needs in D: admin key pair and token key (and a CA chain)",
		Long: `Create in D, keeping what exists:
  admin.key, admin.pub   Ed25519 admin key pair ([admin] identity provider public_key_uri = admin.pub)
  token.key              P-256 token signing key (plugins.token.config.signing_key_path)
with --ca also:
  ca.key, ca-cert.pem    the CA that passport brokers trust (trusted_certs_paths = ca-cert.pem)
  token-cert.pem, token-cert-chain.pem   the token key's certificate and chain (cert_chain_path)

Keep admin.key with the operators and ca.key off the brokers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return initKeys(cmd.ErrOrStderr(), dir, withCA)
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to create the files in (created 0700 when missing)")
	initCmd.Flags().BoolVar(&withCA, "ca", false, "also create a CA and the token key's certificate chain")
	_ = initCmd.MarkFlagRequired("dir")

	cmd.AddCommand(token, initCmd)
	return cmd
}

func initKeys(log io.Writer, dir string, withCA bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	priv, pub := filepath.Join(dir, "admin.key"), filepath.Join(dir, "admin.pub")
	switch _, err := os.Stat(pub); {
	case err == nil:
		fmt.Fprintf(log, "keeping %s\n", pub)
	case errors.Is(err, fs.ErrNotExist):
		// The private key may have been moved off the broker: only the
		// public key says whether the pair exists.
		k, p, err := adminauth.GenerateKeyPair()
		if err != nil {
			return err
		}
		if err := writeNew(priv, k, 0o600); err != nil {
			return fmt.Errorf("admin key: %w", err)
		}
		if err := writeNew(pub, p, 0o644); err != nil {
			return fmt.Errorf("admin key: %w", err)
		}
		fmt.Fprintf(log, "wrote %s and %s\n", priv, pub)
	default:
		return err
	}
	tf := tokenKeyFiles{key: filepath.Join(dir, "token.key"), days: 90, caDays: 3650,
		subject: "KBS token signer", caSubject: "KBS token CA"}
	if withCA {
		tf.cert = filepath.Join(dir, "token-cert.pem")
		tf.chain = filepath.Join(dir, "token-cert-chain.pem")
		tf.caCert = filepath.Join(dir, "ca-cert.pem")
		tf.caKey = filepath.Join(dir, "ca.key")
	}
	return makeTokenKey(log, tf)
}

func makeTokenKey(log io.Writer, tf tokenKeyFiles) error {
	withCA := tf.caCert != "" || tf.caKey != "" || tf.chain != "" || tf.cert != ""
	if withCA && (tf.caCert == "" || tf.caKey == "" || tf.chain == "") {
		return errors.New("a certificate needs --ca-cert, --ca-key and --chain")
	}
	if tf.days <= 0 || tf.caDays <= 0 {
		return errors.New("--days and --ca-days must be positive")
	}
	key, created, err := loadOrCreateP256(tf.key)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	report(log, tf.key, created)
	if !withCA {
		return nil
	}
	caCert, caKey, created, err := loadOrCreateCA(tf.caCert, tf.caKey, tf.caSubject, tf.caDays)
	if err != nil {
		return fmt.Errorf("token CA: %w", err)
	}
	report(log, tf.caKey, created)
	report(log, tf.caCert, created)
	if _, err := os.Stat(tf.chain); err == nil {
		leaf, err := readCert(tf.chain)
		if err != nil {
			return fmt.Errorf("token chain: %w", err)
		}
		if !key.PublicKey.Equal(leaf.PublicKey) {
			return fmt.Errorf("token chain %s certifies another key than %s: delete it to issue a new one", tf.chain, tf.key)
		}
		report(log, tf.chain, false)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	leaf, err := issueLeaf(key, caCert, caKey, tf.subject, tf.days)
	if err != nil {
		return err
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf})
	if tf.cert != "" {
		if err := writeReplace(tf.cert, leafPEM, 0o644); err != nil {
			return err
		}
		report(log, tf.cert, true)
	}
	chain := append(leafPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})...)
	if err := writeNew(tf.chain, chain, 0o644); err != nil {
		return err
	}
	report(log, tf.chain, true)
	return nil
}

func report(log io.Writer, path string, created bool) {
	if created {
		fmt.Fprintf(log, "wrote %s\n", path)
	} else {
		fmt.Fprintf(log, "keeping %s\n", path)
	}
}

func loadOrCreateP256(path string) (*ecdsa.PrivateKey, bool, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		k, err := parseECKey(raw)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

func parseECKey(raw []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	if block.Type == "EC PRIVATE KEY" {
		k, err = x509.ParseECPrivateKey(block.Bytes)
	} else {
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 private key")
	}
	return ec, nil
}

func readCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func loadOrCreateCA(certPath, keyPath, subject string, days int) (*x509.Certificate, crypto.Signer, bool, error) {
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, err := readCert(certPath)
		if err != nil {
			return nil, nil, false, err
		}
		raw, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, false, err
		}
		key, err := parseECKey(raw)
		if err != nil {
			return nil, nil, false, fmt.Errorf("%s: %w", keyPath, err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, nil, false, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
		}
		return cert, key, false, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, false, certErr
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, keyErr
	default:
		return nil, nil, false, fmt.Errorf("only one of %s and %s exists: give both or neither", certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: subject},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, false, err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, false, err
	}
	return cert, key, true, nil
}

func issueLeaf(key *ecdsa.PrivateKey, ca *x509.Certificate, caKey crypto.Signer, subject string, days int) ([]byte, error) {
	now := time.Now()
	notAfter := now.AddDate(0, 0, days)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: subject},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing the token certificate: %w", err)
	}
	return der, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// writeReplace writes a file that is derived from others (the leaf
// certificate alone, a copy of the chain's first element).
func writeReplace(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
