package engine

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// ZZCapture: throwaway instrumentation, not to be committed.
var ZZCapture func(policy string, input ast.Value)
