package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
)

func BenchmarkZZPhase(b *testing.B) {
	sa := &ServiceAccount{Name: benchdata.ServiceAccount, Namespace: benchdata.Namespace, ResourceVersion: "1",
		Annotations: map[string]string{
			"eks.amazonaws.com/role-arn":               benchdata.RoleARN,
			"eks.amazonaws.com/sts-regional-endpoints": "true",
			"eks.amazonaws.com/token-expiration":       "86400",
		}}
	p := defaultProgram(b)
	p.memo = nil
	pod := benchdata.Pod("typical")
	js, _ := json.Marshal(pod)
	PhaseNs = [8]int64{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := Request{Object: js, Attributes: PodCreate(benchdata.Namespace, ""), ServiceAccount: sa}
		if _, err := p.Evaluate(context.Background(), req, EvalOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var out []int64
	for _, v := range PhaseNs {
		out = append(out, v/int64(b.N)/1000)
	}
	fmt.Println("phases µs: cel", out[0], "decode", out[1], "regoInput", out[2], "eval", out[3], "result", out[4], "apply", out[5])
}
