package bench

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/gctune"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

// The benchmarks measure request bytes in to response bytes out, in-process, through
// a reused request and recorder (BenchmarkHarness is that cost alone). Run them with
// -cpu 1 so that garbage collection is charged to the operation, and interleaved with
// the reference: ratios.sh does both.
//
// Every iteration writes a fresh request UID into the body (the API server never
// repeats one, so no memo may key on it). "miss" also writes a fresh pod-template hash
// (generateName, the pod-template-hash label, the owner's name: what a new Deployment
// revision changes, and fields the policies read), so no memoisation can answer it; the
// work is unchanged, the hash having the same length. "hit" sends the same pod again.

// TestMain sets the garbage collector as serve does (GOGC=400 unless GOGC is set), so
// that the figures are the server's; the reference runs under the same setting.
func TestMain(m *testing.M) {
	gctune.ApplyFromOS()
	os.Exit(m.Run())
}

// seq numbers the iterations of the whole process, so that no template hash repeats
// across sub-benchmarks and -count rounds.
var seq uint64 = 1 << 32

func matchName(matched bool) string {
	if matched {
		return "matched"
	}
	return "unmatched"
}

// run is the measured loop, identical for every handler.
func run(b *testing.B, h http.Handler, size benchdata.Size, vary bool, check func(*testing.B, *call)) {
	t := NewTemplate(size)
	c := newCall()
	// One untimed request checks the answer (and, for "hit", primes any memo).
	seq++
	t.SetUID(seq)
	c.serve(h, t.Body)
	if check != nil {
		check(b, c)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(t.Body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq++
		t.SetUID(seq)
		if vary {
			t.SetTemplate(seq)
		}
		c.serve(h, t.Body)
	}
	b.StopTimer()
	if check != nil {
		check(b, c)
	}
}

// checkPatched wants a 200 allowing the pod, with a patch exactly when matched.
func checkPatched(matched bool) func(*testing.B, *call) {
	return func(b *testing.B, c *call) {
		b.Helper()
		resp, err := c.response()
		if err != nil {
			b.Fatal(err)
		}
		if (len(resp.Patch) > 0) != matched {
			b.Fatalf("matched=%v but the response has %d patch bytes", matched, len(resp.Patch))
		}
	}
}

// BenchmarkReference is the plain-Go baseline: {size}/{matched,unmatched}. It varies
// the template like the handler's miss, though it memoises nothing.
func BenchmarkReference(b *testing.B) {
	cfg := BenchConfig()
	for _, size := range benchdata.Sizes {
		for _, matched := range []bool{true, false} {
			ref := NewReference(RefConfigFrom(cfg), ServiceAccount(matched))
			b.Run(string(size)+"/"+matchName(matched), func(b *testing.B) {
				run(b, ref, size, true, checkPatched(matched))
			})
		}
	}
}

// BenchmarkHandler is the real handler with the engine and the default bundle:
// {size}/{matched,unmatched}/{miss,hit}, and {size}/matched/cold: a miss with a
// program that caches nothing of the pods it saw (the name sets of their env and
// volumeMount lists, which a miss otherwise finds again because a new template
// repeats its containers' lists, as a new Deployment revision usually does).
func BenchmarkHandler(b *testing.B) {
	prog, err := CompileDefault(context.Background(), BenchConfig())
	if err != nil {
		b.Fatal(err)
	}
	cold, err := CompileDefaultCold(context.Background(), BenchConfig())
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range benchdata.Sizes {
		for _, matched := range []bool{true, false} {
			h := NewHandler(prog, ServiceAccount(matched))
			for _, mode := range []string{"miss", "hit"} {
				b.Run(string(size)+"/"+matchName(matched)+"/"+mode, func(b *testing.B) {
					run(b, h, size, mode == "miss", checkPatched(matched))
				})
			}
			if matched {
				h := NewHandler(cold, ServiceAccount(matched))
				b.Run(string(size)+"/"+matchName(matched)+"/cold", func(b *testing.B) {
					run(b, h, size, true, checkPatched(matched))
				})
			}
		}
	}
}

// BenchmarkHarness is the harness alone (a handler that does nothing), to be
// subtracted mentally from both sides: {size}.
func BenchmarkHarness(b *testing.B) {
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, size := range benchdata.Sizes {
		b.Run(string(size), func(b *testing.B) {
			run(b, noop, size, true, nil)
		})
	}
}

// fixedAdmitter answers every request with one precomputed decision.
type fixedAdmitter struct{ d *admission.Decision }

func (f fixedAdmitter) Admit(context.Context, engine.Attributes, []byte) (*admission.Decision, error) {
	d := *f.d
	return &d, nil
}

// BenchmarkFloor is webhook.Handler around an Admitter that answers at once with the
// precomputed patch: the cost of the HTTP handler itself (review decode, response
// encode, metrics, log line), which no engine change removes: {size}/{matched,unmatched}.
func BenchmarkFloor(b *testing.B) {
	cfg := BenchConfig()
	for _, size := range benchdata.Sizes {
		for _, matched := range []bool{true, false} {
			ref := NewReference(RefConfigFrom(cfg), ServiceAccount(matched))
			patch, err := ref.patch(benchdata.Namespace, benchdata.PodJSON(size))
			if err != nil {
				b.Fatal(err)
			}
			h := &webhook.Handler{Admitter: fixedAdmitter{&admission.Decision{Allowed: true, Patch: patch}}, Metrics: metrics.New()}
			b.Run(string(size)+"/"+matchName(matched), func(b *testing.B) {
				run(b, h, size, true, checkPatched(matched))
			})
		}
	}
}
