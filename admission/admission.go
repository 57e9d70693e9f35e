// Package admission is the one code path from an admission request to a decision,
// shared by the webhook server and the eval command: find the pod's ServiceAccount and
// identities, run the active policy program, and say what to answer. Because both use
// it, what eval prints is what the server returns.
package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Sources answers what the cluster knows about a pod's ServiceAccount.
type Sources interface {
	// ServiceAccount returns the ServiceAccount, or nil when it does not exist. wait
	// says the caller may wait for one missing from a cache (the grace period); it is
	// false when another source already identifies the ServiceAccount.
	ServiceAccount(ctx context.Context, namespace, name string, wait bool) (*engine.ServiceAccount, error)
	// Identities returns the container-credentials and ConfigMap entries.
	Identities(namespace, name string) engine.Identities
	// Namespace returns the Namespace, or nil when not available.
	Namespace(ctx context.Context, name string) *engine.NamespaceObject
}

// Admitter decides about pods with the current policy program.
type Admitter struct {
	// Program returns the active policy generation; it may change between calls.
	Program func() *engine.Program
	Sources Sources
	// Explain also collects the policies' notes (eval -o explain); off when serving.
	Explain bool
	// Workers, when positive, evaluates policies on that many long-lived goroutines
	// (see workers.go); the server uses GOMAXPROCS. Zero evaluates on the caller's
	// goroutine.
	Workers int

	poolOnce sync.Once
	pool     *workers
}

// Close stops the worker goroutines, if any.
func (a *Admitter) Close() {
	if a.pool != nil {
		a.pool.close()
	}
}

// Decision is the answer to one admission request.
type Decision struct {
	Allowed bool
	// Message explains a denial.
	Message string
	// Patch is the JSON Patch to return, nil when the pod is unchanged.
	Patch []byte
	// Result is the engine's full result, with its trace.
	Result *engine.Result
	// Namespace and ServiceAccount name the pod's ServiceAccount, for logs.
	Namespace, ServiceAccount string
	// ServiceAccountError is set when the ServiceAccount could not be read; the pod
	// was then evaluated as if it had none.
	ServiceAccountError error
}

func (a *Admitter) evaluate(ctx context.Context, program *engine.Program, req engine.Request) (*engine.Result, error) {
	opts := engine.EvalOptions{Explain: a.Explain}
	if a.Workers <= 0 {
		return program.Evaluate(ctx, req, opts)
	}
	a.poolOnce.Do(func() { a.pool = newWorkers(a.Workers) })
	var res *engine.Result
	var err error
	if perr := a.pool.run(ctx, func() { res, err = program.Evaluate(ctx, req, opts) }); perr != nil {
		return nil, fmt.Errorf("waiting for a policy worker: %w", perr)
	}
	return res, err
}

// Admit evaluates the policies for one pod. attrs.Namespace is the pod's namespace
// (the request's, which the API server sets). object must be valid JSON, as it is
// once its AdmissionReview decoded. An error means the object is not a pod the
// engine can read (an *engine.InputError).
func (a *Admitter) Admit(ctx context.Context, attrs engine.Attributes, object []byte) (*Decision, error) {
	// One program for the whole request, and one pass over the pod for both the
	// ServiceAccount's name and the parts the policies read.
	program := a.Program()
	scan, err := program.Scan(object)
	if err != nil {
		reason := err.Error()
		var ie *engine.InputError
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		return nil, &engine.InputError{Field: "object", Reason: "not a pod: " + reason}
	}
	ns, saName := attrs.Namespace, scan.Ref.ServiceAccountName
	if ns == "" {
		ns = scan.Ref.Namespace
	}
	d := &Decision{Allowed: true, Namespace: ns, ServiceAccount: saName}
	req := engine.Request{Object: object, Attributes: attrs, Scan: scan}
	req.Attributes.Namespace = ns
	if saName != "" {
		req.Identities = a.Sources.Identities(ns, saName)
		wait := req.Identities.ContainerCredentials == nil && req.Identities.ConfigMap == nil
		sa, err := a.Sources.ServiceAccount(ctx, ns, saName, wait)
		if err != nil {
			d.ServiceAccountError = err
		}
		req.ServiceAccount = sa
	}
	req.Namespace = a.Sources.Namespace(ctx, ns)

	res, err := a.evaluate(ctx, program, req)
	if err != nil {
		return nil, err
	}
	d.Result = res
	if res.Denied != "" {
		d.Allowed = false
		d.Message = res.Denied
		return d, nil
	}
	if res.Mutated() {
		patch, err := res.PatchJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding the patch: %w", err)
		}
		d.Patch = patch
	}
	return d, nil
}
