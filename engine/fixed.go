package engine

import (
	"github.com/google/cel-go/interpreter"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The inputs that do not change while the policies of one request run, by index.
const (
	fixedOldObject = iota
	fixedRequest
	fixedServiceAccount
	fixedNamespaceObject
	fixedIdentities
	nFixed
)

var fixedNames = [nFixed]string{varOldObject, varRequest, varServiceAccount, varNamespaceObject, varIdentities}

func fixedIndex(name string) (int, bool) {
	for i, n := range fixedNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// fixedInputs builds each fixed input on first use, as a Go value for CEL and as a
// Rego value: a request whose conditions read only the ServiceAccount and the
// identities (the default bundle's, and every memo hit) never builds the others.
type fixedInputs struct {
	req *Request
	old any // the decoded old object, nil on CREATE
	// requestFields are the fields of input.request Rego gets; nil: all.
	requestFields []string
	goVals        [nFixed]any
	goDone        [nFixed]bool
	values        [nFixed]ast.Value
}

func (f *fixedInputs) goValue(i int) any {
	if f.goDone[i] {
		return f.goVals[i]
	}
	var v any
	switch i {
	case fixedOldObject:
		v = f.old
	case fixedRequest:
		v = f.req.Attributes.toMap()
	case fixedServiceAccount:
		if f.req.ServiceAccount != nil {
			v, _ = f.req.ServiceAccount.input()
		}
	case fixedNamespaceObject:
		v = f.req.Namespace.toMap()
	case fixedIdentities:
		v = f.req.Identities.toMap()
	}
	f.goVals[i], f.goDone[i] = v, true
	return v
}

func (f *fixedInputs) value(i int) ast.Value {
	if f.values[i] == nil {
		switch {
		case i == fixedServiceAccount && f.req.ServiceAccount != nil:
			_, f.values[i] = f.req.ServiceAccount.input() // converted once per ServiceAccount
		case i == fixedRequest:
			f.values[i] = f.req.Attributes.toValue(f.requestFields)
		case i == fixedNamespaceObject:
			f.values[i] = f.req.Namespace.toValue()
		case i == fixedIdentities:
			f.values[i] = f.req.Identities.toValue()
		default:
			f.values[i] = mustValue(f.goValue(i))
		}
	}
	return f.values[i]
}

// celActivation resolves the CEL variables of one condition without building a map
// of them: the fixed inputs come from fixedInputs, object and params as given.
type celActivation struct {
	in     *requestInput
	params map[string]any
}

func (a *celActivation) ResolveName(name string) (any, bool) {
	switch name {
	case varObject:
		return a.in.doc, true // nil when the conditions do not read it
	case varParams:
		return a.params, true
	}
	if i, ok := fixedIndex(name); ok {
		return a.in.fixed.goValue(i), true
	}
	return nil, false
}

func (a *celActivation) Parent() interpreter.Activation { return nil }
