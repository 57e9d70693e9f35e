// Package policies holds the default policy bundle: the Rego modules, their unit tests
// and the manifest that together reproduce the Amazon EKS Pod Identity Webhook
// (web identity / IRSA and container credentials / EKS Pod Identity).
//
// The directory is flat on purpose: the same files can be shipped as the data keys of
// a ConfigMap bundle. The *_test.rego files are embedded too: the engine runs them
// before it activates a bundle, never at admission. See docs/policies.md.
package policies

import "embed"

// FS holds manifest.yaml and every *.rego file of the default bundle.
//
//go:embed manifest.yaml *.rego
var FS embed.FS
