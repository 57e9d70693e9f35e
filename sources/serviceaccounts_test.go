package sources

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

var saResource = schema.GroupResource{Resource: "serviceaccounts"}

func fullServiceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{
			Name: "app", Namespace: "team", UID: "uid-1", ResourceVersion: "42",
			Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{
				prefix + "/role-arn":      "arn:aws:iam::111122223333:role/app",
				prefix + "/audience":      "sts.amazonaws.com",
				"other.io/role-arn":       "ignored",
				prefix + ".evil/role-arn": "ignored: the prefix is followed by '/'",
				"kubectl.kubernetes.io/x": "ignored",
			},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{{Name: "owner"}},
			Finalizers:      []string{"f"},
		},
		Secrets:          []corev1.ObjectReference{{Name: "token"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
	}
}

func TestStripTransform(t *testing.T) {
	transform := stripTransform(prefix)
	want := newCachedServiceAccount(&engine.ServiceAccount{
		Name: "app", Namespace: "team", UID: "uid-1", ResourceVersion: "42",
		Annotations: map[string]string{
			prefix + "/role-arn": "arn:aws:iam::111122223333:role/app",
			prefix + "/audience": "sts.amazonaws.com",
		},
	})
	got, err := transform(fullServiceAccount())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want.sa, &got.(*cachedServiceAccount).sa, ignoreCached); diff != "" {
		t.Errorf("stripped ServiceAccount (-want +got):\n%s", diff)
	}
	again, err := transform(got)
	if err != nil {
		t.Fatal(err)
	}
	if again != got {
		t.Errorf("transform is not idempotent: %#v became %#v", got, again)
	}

	noPrefixed := serviceAccount("team", "plain", map[string]string{"a": "b"})
	got, _ = transform(noPrefixed)
	if ann := got.(*cachedServiceAccount).sa.Annotations; ann != nil {
		t.Errorf("annotations without prefixed keys = %v, want nil", ann)
	}

	tomb := cache.DeletedFinalStateUnknown{Key: "team/app", Obj: fullServiceAccount()}
	got, _ = transform(tomb)
	if diff := cmp.Diff(tomb, got, ignoreCached); diff != "" {
		t.Errorf("tombstone changed (-want +got):\n%s", diff)
	}
}

// The informer's store holds the stripped object, and lookups return what policies see.
func TestServiceAccountCacheHit(t *testing.T) {
	client := fake.NewSimpleClientset(fullServiceAccount())
	m := metrics.New()
	c := startReady(t, client, Options{GracePeriod: time.Second, Metrics: m})

	got, err := c.ServiceAccount(context.Background(), "team", "app", true)
	if err != nil {
		t.Fatal(err)
	}
	want := &engine.ServiceAccount{Name: "app", Namespace: "team", UID: "uid-1", ResourceVersion: "42",
		Annotations: map[string]string{
			prefix + "/role-arn": "arn:aws:iam::111122223333:role/app",
			prefix + "/audience": "sts.amazonaws.com",
		}}
	if diff := cmp.Diff(want, got, ignoreCached); diff != "" {
		t.Errorf("ServiceAccount (-want +got):\n%s", diff)
	}
	stored, ok, _ := c.sa.informer.GetStore().GetByKey("team/app")
	if !ok {
		t.Fatal("team/app not in the informer's store")
	}
	if sa := &stored.(*cachedServiceAccount).sa; sa != got || sa.Labels != nil || len(sa.Annotations) != 2 {
		t.Errorf("stored ServiceAccount not stripped, or not the object lookups return: %+v", sa)
	}
	if n := countActions(client, "get", "serviceaccounts"); n != 0 {
		t.Errorf("GETs = %d, want 0", n)
	}
	if v := value(t, m.SACacheMisses); v != 0 {
		t.Errorf("cache misses = %v, want 0", v)
	}
	if v := value(t, m.Used); v != 1 {
		t.Errorf("used = %v, want 1", v)
	}
}

func TestUsedStaysZeroWithoutServiceAccounts(t *testing.T) {
	m := metrics.New()
	startReady(t, fake.NewSimpleClientset(), Options{Metrics: m})
	if v := value(t, m.Used); v != 0 {
		t.Errorf("used = %v, want 0", v)
	}
}

// The race of upstream #174: the pod's request arrives before its ServiceAccount.
func TestGracePeriodFindsServiceAccountCreatedLater(t *testing.T) {
	client := fake.NewSimpleClientset()
	m := metrics.New()
	c := startReady(t, client, Options{GracePeriod: 200 * time.Millisecond, Metrics: m})

	go func() {
		time.Sleep(50 * time.Millisecond)
		if _, err := client.CoreV1().ServiceAccounts("team").Create(context.Background(),
			serviceAccount("team", "late", map[string]string{prefix + "/role-arn": "arn"}), metav1.CreateOptions{}); err != nil {
			t.Error(err)
		}
	}()
	got, err := c.ServiceAccount(context.Background(), "team", "late", true)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Annotations[prefix+"/role-arn"] != "arn" {
		t.Fatalf("ServiceAccount = %+v, want team/late with its role", got)
	}
	if v := value(t, m.SAGraceWaits.WithLabelValues("found")); v != 1 {
		t.Errorf("grace waits found = %v, want 1", v)
	}
	if v := value(t, m.MissingSACount); v != 0 {
		t.Errorf("missing = %v, want 0", v)
	}
}

// blockingGet makes GETs of ServiceAccounts wait for release, then answer with answer.
func blockingGet(client *fake.Clientset, release <-chan struct{}, answer func(name string) (runtime.Object, error)) {
	client.PrependReactor("get", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		obj, err := answer(a.(k8stesting.GetAction).GetName())
		return true, obj, err
	})
}

func lookupConcurrently(c *Cluster, n int, ns, name string) ([]*engine.ServiceAccount, []error) {
	sas, errs := make([]*engine.ServiceAccount, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sas[i], errs[i] = c.ServiceAccount(context.Background(), ns, name, true) })
	}
	wg.Wait()
	return sas, errs
}

func TestConcurrentMissesShareOneGet(t *testing.T) {
	t.Run("found", func(t *testing.T) {
		client := fake.NewSimpleClientset()
		release := make(chan struct{})
		blockingGet(client, release, func(name string) (runtime.Object, error) {
			return serviceAccount("team", name, map[string]string{prefix + "/role-arn": "arn", "x": "y"}), nil
		})
		m := metrics.New()
		c := startReady(t, client, Options{GracePeriod: deadline, Metrics: m})

		go func() {
			eventually(t, "10 waiting requests", func() bool { return c.sa.waiting("team/app") == 10 })
			close(release)
		}()
		sas, errs := lookupConcurrently(c, 10, "team", "app")
		want := &engine.ServiceAccount{Name: "app", Namespace: "team", Annotations: map[string]string{prefix + "/role-arn": "arn"}}
		for i := range sas {
			if errs[i] != nil {
				t.Errorf("request %d: %v", i, errs[i])
			}
			if diff := cmp.Diff(want, sas[i], ignoreCached); diff != "" {
				t.Errorf("request %d (-want +got):\n%s", i, diff)
			}
		}
		if n := countActions(client, "get", "serviceaccounts"); n != 1 {
			t.Errorf("GETs = %d, want 1", n)
		}
		for name, want := range map[string]float64{"found": 1, "not_found": 0, "error": 0, "dropped": 0} {
			if v := value(t, m.SAFetches.WithLabelValues(name)); v != want {
				t.Errorf("fetches %s = %v, want %v", name, v, want)
			}
		}
		if v := value(t, m.SAGraceWaits.WithLabelValues("found")); v != 10 {
			t.Errorf("grace waits found = %v, want 10", v)
		}
		if v := value(t, m.SACacheMisses); v != 10 {
			t.Errorf("cache misses = %v, want 10", v)
		}
		// The fetched ServiceAccount is cached: no further GET.
		if sa, _ := c.ServiceAccount(context.Background(), "team", "app", true); sa == nil {
			t.Error("fetched ServiceAccount not cached")
		}
		if n := countActions(client, "get", "serviceaccounts"); n != 1 {
			t.Errorf("GETs after a cached lookup = %d, want 1", n)
		}
	})

	// A GET that finds nothing ends the wait only at the grace period, and does not
	// stop a later request from asking again (upstream left the key stuck).
	t.Run("not found", func(t *testing.T) {
		client := fake.NewSimpleClientset()
		release := make(chan struct{})
		blockingGet(client, release, func(name string) (runtime.Object, error) {
			return nil, apierrors.NewNotFound(saResource, name)
		})
		m := metrics.New()
		const grace = 300 * time.Millisecond
		c := startReady(t, client, Options{GracePeriod: grace, Metrics: m})

		go func() {
			eventually(t, "10 waiting requests", func() bool { return c.sa.waiting("team/gone") == 10 })
			close(release)
		}()
		start := time.Now()
		sas, errs := lookupConcurrently(c, 10, "team", "gone")
		if elapsed := time.Since(start); elapsed < grace {
			t.Errorf("returned after %v, before the grace period %v", elapsed, grace)
		}
		for i := range sas {
			if sas[i] != nil || errs[i] != nil {
				t.Errorf("request %d = %v, %v; want nil, nil", i, sas[i], errs[i])
			}
		}
		if n := countActions(client, "get", "serviceaccounts"); n != 1 {
			t.Errorf("GETs = %d, want 1", n)
		}
		if v := value(t, m.SAFetches.WithLabelValues("not_found")); v != 1 {
			t.Errorf("fetches not_found = %v, want 1", v)
		}
		if v := value(t, m.SAGraceWaits.WithLabelValues("timeout")); v != 10 {
			t.Errorf("grace waits timeout = %v, want 10", v)
		}
		if v := value(t, m.MissingSACount); v != 10 {
			t.Errorf("missing = %v, want 10", v)
		}

		if sa, err := c.ServiceAccount(context.Background(), "team", "gone", true); sa != nil || err != nil {
			t.Errorf("later request = %v, %v; want nil, nil", sa, err)
		}
		if n := countActions(client, "get", "serviceaccounts"); n != 2 {
			t.Errorf("GETs after a later request = %d, want 2", n)
		}
		c.sa.mu.RLock()
		pending := len(c.sa.pending)
		c.sa.mu.RUnlock()
		if pending != 0 {
			t.Errorf("%d lookups still pending after every request ended", pending)
		}
	})
}

func TestNoWait(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		wait  bool
	}{
		{"wait false", time.Minute, false},
		{"grace period 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewSimpleClientset()
			m := metrics.New()
			c := startReady(t, client, Options{GracePeriod: tc.grace, Metrics: m})
			start := time.Now()
			sa, err := c.ServiceAccount(context.Background(), "team", "missing", tc.wait)
			if sa != nil || err != nil {
				t.Errorf("ServiceAccount = %v, %v; want nil, nil", sa, err)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("took %v, want no wait", elapsed)
			}
			if n := countActions(client, "get", "serviceaccounts"); n != 0 {
				t.Errorf("GETs = %d, want 0", n)
			}
			if v := value(t, m.SACacheMisses); v != 1 {
				t.Errorf("cache misses = %v, want 1", v)
			}
			if v := value(t, m.MissingSACount); v != 1 {
				t.Errorf("missing = %v, want 1", v)
			}
		})
	}
}

// A failed GET (other than NotFound) is reported to the caller and does not stop the
// next request from trying again.
func TestFetchError(t *testing.T) {
	client := fake.NewSimpleClientset()
	client.PrependReactor("get", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd is down"))
	})
	m := metrics.New()
	c := startReady(t, client, Options{GracePeriod: 100 * time.Millisecond, Metrics: m})
	for i := 1; i <= 2; i++ {
		sa, err := c.ServiceAccount(context.Background(), "team", "app", true)
		if sa != nil || err == nil || !strings.Contains(err.Error(), "etcd is down") {
			t.Errorf("request %d = %v, %v; want nil and the GET's error", i, sa, err)
		}
		if n := countActions(client, "get", "serviceaccounts"); n != i {
			t.Errorf("GETs after request %d = %d, want %d", i, n, i)
		}
	}
	if v := value(t, m.SAFetches.WithLabelValues("error")); v != 2 {
		t.Errorf("fetches error = %v, want 2", v)
	}
}

func TestFetchDroppedWhenQueueFull(t *testing.T) {
	m := metrics.New()
	c, err := NewCluster(fake.NewSimpleClientset(), Options{AnnotationPrefix: prefix, GracePeriod: 20 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	c.sa.queue = make(chan fetchRequest) // no room and, unstarted, no reader
	if sa, err := c.ServiceAccount(context.Background(), "team", "app", true); sa != nil || err != nil {
		t.Errorf("ServiceAccount = %v, %v; want nil, nil", sa, err)
	}
	if v := value(t, m.SAFetches.WithLabelValues("dropped")); v != 1 {
		t.Errorf("fetches dropped = %v, want 1", v)
	}
	if len(c.sa.pending) != 0 {
		t.Errorf("%d lookups still pending", len(c.sa.pending))
	}
}

func TestContextEndsWait(t *testing.T) {
	client := fake.NewSimpleClientset()
	c := startReady(t, client, Options{GracePeriod: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	sa, err := c.ServiceAccount(ctx, "team", "app", true)
	if sa != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ServiceAccount = %v, %v; want nil and the context's error", sa, err)
	}
}

func TestServiceAccountUpdateAndDelete(t *testing.T) {
	client := fake.NewSimpleClientset(serviceAccount("team", "app", map[string]string{prefix + "/role-arn": "one"}))
	c := startReady(t, client, Options{})
	get := func() *engine.ServiceAccount {
		sa, _ := c.ServiceAccount(context.Background(), "team", "app", false)
		return sa
	}
	if sa := get(); sa == nil || sa.Annotations[prefix+"/role-arn"] != "one" {
		t.Fatalf("ServiceAccount = %+v, want role one", sa)
	}
	ctx := context.Background()
	if _, err := client.CoreV1().ServiceAccounts("team").Update(ctx,
		serviceAccount("team", "app", map[string]string{prefix + "/role-arn": "two"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the update", func() bool { sa := get(); return sa != nil && sa.Annotations[prefix+"/role-arn"] == "two" })
	if err := client.CoreV1().ServiceAccounts("team").Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delete", func() bool { return get() == nil })
}

// A GET that raced with the informer does not overwrite what the informer said: here
// the informer delivered the ServiceAccount and then its deletion while the GET ran.
func TestFetchedCopyLosesToInformer(t *testing.T) {
	c, err := NewCluster(fake.NewSimpleClientset(), Options{AnnotationPrefix: prefix, GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := c.sa
	p := &pendingLookup{done: make(chan struct{}), fetching: true}
	s.pending["team/app"] = p
	r := fetchRequest{key: "team/app", namespace: "team", name: "app", p: p}

	s.upsert(newCachedServiceAccount(StripServiceAccount(serviceAccount("team", "app", nil), prefix))) // wakes p
	s.remove(serviceAccount("team", "app", nil))
	s.insertFetched(r, StripServiceAccount(serviceAccount("team", "app", nil), prefix))
	if len(s.cache) != 0 || len(s.pending) != 0 || p.fetching {
		t.Errorf("cache = %v, pending = %v, fetching = %v; want all empty", s.cache, s.pending, p.fetching)
	}
}
