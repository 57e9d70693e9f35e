// Command pod-identity-webhook is the webhook server and its tools in one binary; see
// the cli package for the commands.
package main

import (
	"os"

	"github.com/pod-identity-webhook/pod-identity-webhook/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
