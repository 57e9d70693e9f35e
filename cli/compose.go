package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
)

// composeRoleARNParams fills --aws-account-id and --aws-partition from the EC2
// instance identity document when --compose-role-arn is on and they are not given,
// as upstream does at startup (and, like upstream, fails when the metadata service
// cannot be reached). Explicit flags let clusters that are not on EC2 use the feature.
func composeRoleARNParams(ctx context.Context, cfg *config.Config) error {
	if !cfg.ComposeRoleARN || (cfg.AWSAccountID != "" && cfg.AWSPartition != "") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	doc, err := imds.New(imds.Options{}).GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return fmt.Errorf("--compose-role-arn: reading the EC2 instance identity document: %v (give --aws-account-id and --aws-partition when not on EC2)", err)
	}
	if cfg.AWSAccountID == "" {
		cfg.AWSAccountID = doc.AccountID
	}
	if cfg.AWSPartition == "" {
		cfg.AWSPartition = partitionForRegion(doc.Region)
	}
	klog.InfoS("composing role ARNs", "partition", cfg.AWSPartition, "account", cfg.AWSAccountID)
	return nil
}

// partitionForRegion maps a region to its partition, as upstream does.
func partitionForRegion(region string) string {
	for _, p := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"}, {"us-gov-", "aws-us-gov"}, {"us-isob-", "aws-iso-b"}, {"us-iso-", "aws-iso"}, {"eusc-", "aws-eusc"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}
