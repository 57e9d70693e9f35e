// Package cli holds the pod-identity-webhook command line: serve (the default when only
// upstream flags are given), eval, opa and version. It is a package of its own, not
// part of main, so that tests run the very commands users run.
package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Version is the release version, set at build time with
// -ldflags "-X github.com/pod-identity-webhook/pod-identity-webhook/cli.Version=v1.2.3".
var Version = "v0.0.0-dev"

// ExitError carries a process exit code and the one line to print on stderr.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func usageError(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// NewRootCommand builds the whole command tree. stdin, stdout and stderr are what
// commands read and write, so tests can supply and capture them.
func NewRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "pod-identity-webhook",
		Short: "AWS IAM identity for pods, as policy",
		Long: `pod-identity-webhook is a Kubernetes mutating admission webhook that gives pods
AWS IAM identity (IRSA web identity and EKS Pod Identity container credentials).
CEL selects the pods and Rego builds the patch; the embedded default bundle does
what the Amazon EKS Pod Identity Webhook does.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Only flags, no subcommand: serve, so an upstream Deployment's args work.
		Args: cobra.NoArgs,
		RunE: runServe,
	}
	addServeFlags(root.Flags())
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCommand(), newOPACommand(), newVersionCommand(), newEvalCommand(stdin))
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
			return err
		},
	}
}

// Main runs the command line with the process arguments and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	code := 2
	var ee *ExitError
	if asExit(err, &ee) {
		code = ee.Code
	}
	fmt.Fprintf(stderr, "pod-identity-webhook: %v\n", err)
	return code
}
