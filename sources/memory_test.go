package sources

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// BenchmarkServiceAccountCacheMemory reports the heap one cached ServiceAccount costs,
// beyond its name and namespace strings, with 100,000 in the cache: what the informer's
// store keeps (the stripped object under its key) plus the lookup map. A third of them
// carry a role annotation, as in a cluster where some workloads use IRSA. Each one
// arrives as from the API server: a fresh object with labels, other annotations and
// secrets, which the informer's transform strips before storing it.
func BenchmarkServiceAccountCacheMemory(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		s, err := newServiceAccounts(fake.NewSimpleClientset(), prefix, 0, 0, metrics.New())
		if err != nil {
			b.Fatal(err)
		}
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		transform := stripTransform(prefix)
		names := make([]string, 0, 2*n) // the name strings, excluded from the figure
		for j := 0; j < n; j++ {
			names = append(names, fmt.Sprintf("team-%d", j%500), fmt.Sprintf("workload-%d", j))
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for j := 0; j < n; j++ {
			sa := &corev1.ServiceAccount{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: names[2*j], Name: names[2*j+1],
					UID:             types.UID(fmt.Sprintf("3a1f2b4c-5d6e-4f70-8192-%012d", j)),
					ResourceVersion: fmt.Sprint(1_000_000 + j),
					Labels:          map[string]string{"app.kubernetes.io/name": "workload"},
					Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"ServiceAccount"}`},
				},
				Secrets: []corev1.ObjectReference{{Name: "token"}},
			}
			if j%3 == 0 {
				sa.Annotations[prefix+"/role-arn"] = fmt.Sprintf("arn:aws:iam::111122223333:role/workload-%d", j)
			}
			obj, _ := transform(sa)
			_ = store.Add(obj)
			s.upsert(obj)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(store)
		runtime.KeepAlive(names)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/sa")
	}
}
