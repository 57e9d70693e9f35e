package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
)

// benchParams are the flags the performance notes measured with: region set, regional
// STS on, everything else at upstream defaults.
var benchParams = map[string]any{
	"annotationPrefix": "eks.amazonaws.com", "tokenAudience": "sts.amazonaws.com",
	"tokenMountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "tokenExpiration": 86400,
	"awsDefaultRegion": "us-west-2", "stsRegionalEndpoint": false, "composeRoleArn": false,
	"awsAccountID": "", "awsPartition": "",
	"containerCredentialsAudience":        "pods.eks.amazonaws.com",
	"containerCredentialsTokenMountPath":  "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
	"containerCredentialsTokenVolumeName": "eks-pod-identity-token",
	"containerCredentialsTokenPath":       "eks-pod-identity-token",
	"containerCredentialsFullURI":         "http://169.254.170.23/v1/credentials",
}

// compileDefault compiles the embedded default bundle with opts.
func compileDefault(tb testing.TB, opts Options) *Program {
	tb.Helper()
	bundle, err := LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		tb.Fatal(err)
	}
	p, err := Compile(context.Background(), []*Bundle{bundle}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkEvaluate measures the engine alone (decode the pod, CEL, Rego, patch) with
// the default bundle. "matched": the ServiceAccount has a role (5 env vars and a mount
// per container, one volume); "unmatched": it has none (no policy applies). "miss"
// gives every iteration a pod of its own template (another generateName), so the memo
// never has the answer; "hit" repeats one pod. Run with -cpu 1 so that garbage
// collection is charged to the operation.
func BenchmarkEvaluate(b *testing.B) {
	for _, size := range benchdata.Sizes {
		for _, matched := range []bool{true, false} {
			sa := &ServiceAccount{Name: benchdata.ServiceAccount, Namespace: benchdata.Namespace, ResourceVersion: "1"}
			match := "unmatched"
			if matched {
				match = "matched"
				sa.Annotations = map[string]string{
					"eks.amazonaws.com/role-arn":               benchdata.RoleARN,
					"eks.amazonaws.com/sts-regional-endpoints": "true",
					"eks.amazonaws.com/token-expiration":       "86400",
				}
			}
			for _, hit := range []bool{false, true} {
				name := string(size) + "/" + match + "/miss"
				if hit {
					name = string(size) + "/" + match + "/hit"
				}
				b.Run(name, func(b *testing.B) {
					p := compileDefault(b, Options{Params: benchParams})
					pods := make([][]byte, b.N)
					for i := range pods {
						if hit && i > 0 {
							pods[i] = pods[0]
							continue
						}
						pod := benchdata.Pod(size)
						pod["metadata"].(map[string]any)["generateName"] = fmt.Sprintf("payments-api-%d-", i)
						pods[i], _ = json.Marshal(pod)
					}
					if hit { // warm the memo
						_, _ = p.Evaluate(context.Background(), Request{Object: pods[0], Attributes: PodCreate(benchdata.Namespace, ""), ServiceAccount: sa}, EvalOptions{})
					}
					b.ReportAllocs()
					b.SetBytes(int64(len(pods[0])))
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						req := Request{Object: pods[i], Attributes: PodCreate(benchdata.Namespace, ""), ServiceAccount: sa}
						res, err := p.Evaluate(context.Background(), req, EvalOptions{})
						if err != nil {
							b.Fatal(err)
						}
						if res.Mutated() != matched || len(res.Failed()) > 0 || (matched && res.Trace.Memoized != hit) {
							b.Fatalf("mutated=%v memoized=%v failed=%v", res.Mutated(), res.Trace.Memoized, res.Failed())
						}
					}
				})
			}
		}
	}
}

// BenchmarkEvaluators compares the IR machine with topdown on the engine's miss, the
// default bundle, a ServiceAccount with a role: {size}/{ir,topdown}.
func BenchmarkEvaluators(b *testing.B) {
	sa := &ServiceAccount{Name: benchdata.ServiceAccount, Namespace: benchdata.Namespace, ResourceVersion: "1",
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": benchdata.RoleARN}}
	for _, size := range benchdata.Sizes {
		for _, ev := range Evaluators {
			b.Run(string(size)+"/"+string(ev), func(b *testing.B) {
				p := compileDefault(b, Options{Params: benchParams, Evaluator: ev, MemoSize: -1})
				pod, _ := json.Marshal(benchdata.Pod(size))
				req := Request{Object: pod, Attributes: PodCreate(benchdata.Namespace, ""), ServiceAccount: sa}
				b.ReportAllocs()
				for b.Loop() {
					res, err := p.Evaluate(context.Background(), req, EvalOptions{})
					if err != nil || !res.Mutated() || len(res.Failed()) > 0 {
						b.Fatalf("err=%v mutated=%v failed=%v", err, res.Mutated(), res.Failed())
					}
				}
			})
		}
	}
}

// BenchmarkCompileDefaultBundle measures a policy load: CEL compile plus Rego prepare.
func BenchmarkCompileDefaultBundle(b *testing.B) {
	bundle, err := LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Compile(context.Background(), []*Bundle{bundle}, Options{Params: benchParams}); err != nil {
			b.Fatal(err)
		}
	}
}
