package kms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/gokbs/kbs/sdk"
)

// AWSConfig selects an AWS KMS key (or one of a server speaking the KMS
// API, such as local-kms).
type AWSConfig struct {
	// KeyID is the symmetric key that wraps new data keys: key ID, key ARN,
	// alias name or alias ARN.
	KeyID string `json:"key_id"`
	// Region, e.g. eu-west-1. Required.
	Region string `json:"region"`
	// Endpoint overrides the regional endpoint (a VPC endpoint, a
	// KMS-API server).
	Endpoint string `json:"endpoint"`
	// AccessKeyID and SecretAccessKeyFile are static credentials. Without
	// them, the SDK's default chain runs without environment variables:
	// the instance's role through IMDS.
	AccessKeyID         string `json:"access_key_id"`
	SecretAccessKeyFile string `json:"secret_access_key_file"`
}

// contextKey names the resource path in the KMS encryption context, which
// binds each wrapped data key to its resource (and shows up in CloudTrail).
const contextKey = "kbs:resource"

type awsProvider struct {
	client  *awskms.Client
	keyID   string
	region  string
	timeout time.Duration
}

func newAWSProvider(cfg AWSConfig, timeout time.Duration) (*awsProvider, error) {
	if cfg.KeyID == "" || cfg.Region == "" {
		return nil, sdk.InvalidArgument("kms settings: aws needs key_id and region")
	}
	if cfg.Endpoint != "" {
		if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, sdk.InvalidArgument("kms settings: aws.endpoint must be an http(s) URL")
		}
	}
	hc := awshttp.NewBuildableClient().WithTimeout(timeout).WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = nil // the plugin has no environment; be explicit about it
	})
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithHTTPClient(hc),
		// Two quick attempts: a longer backoff would only wait out the
		// timeout and hide the reason of the failure.
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 2
				o.MaxBackoff = 200 * time.Millisecond
			})
		}),
	}
	switch {
	case cfg.AccessKeyID != "" && cfg.SecretAccessKeyFile != "":
		b, err := os.ReadFile(cfg.SecretAccessKeyFile)
		if err != nil {
			return nil, sdk.InvalidArgument("kms settings: aws.secret_access_key_file: %v", errors.Unwrap(err))
		}
		secret := strings.TrimSpace(string(b))
		if secret == "" {
			return nil, sdk.InvalidArgument("kms settings: aws.secret_access_key_file is empty")
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, secret, "")))
	case cfg.AccessKeyID != "" || cfg.SecretAccessKeyFile != "":
		return nil, sdk.InvalidArgument("kms settings: aws needs both access_key_id and secret_access_key_file, or neither")
	}
	ac, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, sdk.InvalidArgument("kms settings: aws: %v", err)
	}
	client := awskms.NewFromConfig(ac, func(o *awskms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &awsProvider{client: client, keyID: cfg.KeyID, region: cfg.Region, timeout: timeout}, nil
}

func (a *awsProvider) name() string { return "aws-kms" }
func (a *awsProvider) close()       {}

func encContext(aad []byte) map[string]string { return map[string]string{contextKey: string(aad)} }

func (a *awsProvider) wrap(ctx context.Context, dataKey, aad []byte) (string, []byte, error) {
	out, err := a.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId: aws.String(a.keyID), Plaintext: dataKey, EncryptionContext: encContext(aad),
	})
	if err != nil {
		return "", nil, a.classify(ctx, "Encrypt", err)
	}
	return aws.ToString(out.KeyId), out.CiphertextBlob, nil
}

func (a *awsProvider) unwrap(ctx context.Context, keyID string, wrapped, aad []byte) ([]byte, error) {
	// Naming the key is what AWS recommends: KMS then refuses a blob
	// wrapped by any other key.
	out, err := a.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId: aws.String(keyID), CiphertextBlob: wrapped, EncryptionContext: encContext(aad),
	})
	if err != nil {
		return nil, a.classify(ctx, "Decrypt", err)
	}
	return out.Plaintext, nil
}

func (a *awsProvider) current(ctx context.Context) (string, error) {
	out, err := a.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(a.keyID)})
	if err != nil {
		return "", a.classify(ctx, "DescribeKey", err)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.Arn == nil {
		return "", sdk.Internal("aws kms: DescribeKey %s returned no ARN", a.keyID)
	}
	return *out.KeyMetadata.Arn, nil
}

// rewrap uses ReEncrypt: the data key is decrypted and encrypted again
// inside KMS and never reaches this process.
func (a *awsProvider) rewrap(ctx context.Context, keyID string, wrapped, aad []byte) (string, []byte, error) {
	out, err := a.client.ReEncrypt(ctx, &awskms.ReEncryptInput{
		CiphertextBlob: wrapped, SourceKeyId: aws.String(keyID), SourceEncryptionContext: encContext(aad),
		DestinationKeyId: aws.String(a.keyID), DestinationEncryptionContext: encContext(aad),
	})
	if err != nil {
		return "", nil, a.classify(ctx, "ReEncrypt", err)
	}
	return aws.ToString(out.KeyId), out.CiphertextBlob, nil
}

// classify maps KMS errors: a blob that does not decrypt is a damaged or
// forged envelope (internal); anything else — unreachable, throttled,
// refused credentials, a disabled or deleted key — is the key manager
// being unavailable. Messages carry KMS's error code, never a credential.
func (a *awsProvider) classify(ctx context.Context, op string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidCiphertextException", "IncorrectKeyException":
			return sdk.Internal("aws kms %s: %s: the wrapped data key does not decrypt (damaged or forged envelope)", op, apiErr.ErrorCode())
		}
		return sdk.Unavailable("aws kms %s: %s: %s", op, apiErr.ErrorCode(), apiErr.ErrorMessage())
	}
	if ctx.Err() != nil {
		return sdk.Unavailable("aws kms %s (%s): no answer within %s", op, a.region, a.timeout)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return sdk.Unavailable("aws kms %s (%s): unreachable: %v", op, a.region, oe)
	}
	return sdk.Unavailable("aws kms %s (%s): %v", op, a.region, err)
}
