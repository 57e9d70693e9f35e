// Command sdkprobe resolves AWS credentials with the AWS SDK for Go v2 default
// credential chain, configured by nothing but its process environment, and prints the
// outcome as one JSON object on stdout.
//
// The end-to-end tests run it with exactly the environment a webhook injected into a
// pod's container (token file paths and endpoints rewritten to local stand-ins), so that
// the check is "what the SDK actually consumes", not what a test thinks it should.
//
// Exit status: 0 when credentials were retrieved, 1 when the SDK failed (the JSON then
// carries the error and, when the failure is an AWS API error, its code).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
)

// Result is the JSON printed on stdout. test/e2e decodes the same shape.
type Result struct {
	OK              bool   `json:"ok"`
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
	SessionToken    string `json:"sessionToken,omitempty"`
	Source          string `json:"source,omitempty"`
	CanExpire       bool   `json:"canExpire,omitempty"`
	Expires         string `json:"expires,omitempty"`
	Region          string `json:"region,omitempty"`
	Stage           string `json:"stage,omitempty"` // "config" or "retrieve" when !OK
	Error           string `json:"error,omitempty"`
	ErrorCode       string `json:"errorCode,omitempty"`
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := run(ctx)
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if !res.OK {
		os.Exit(1)
	}
}

func run(ctx context.Context) Result {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return failure("config", err)
	}
	if cfg.Credentials == nil {
		return Result{Stage: "config", Error: "no credential provider resolved", Region: cfg.Region}
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		r := failure("retrieve", err)
		r.Region = cfg.Region
		return r
	}
	r := Result{
		OK:              true,
		AccessKeyID:     creds.AccessKeyID,
		SecretAccessKey: creds.SecretAccessKey,
		SessionToken:    creds.SessionToken,
		Source:          creds.Source,
		CanExpire:       creds.CanExpire,
		Region:          cfg.Region,
	}
	if creds.CanExpire {
		r.Expires = creds.Expires.UTC().Format(time.RFC3339)
	}
	return r
}

func failure(stage string, err error) Result {
	r := Result{Stage: stage, Error: err.Error()}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		r.ErrorCode = apiErr.ErrorCode()
	}
	return r
}
