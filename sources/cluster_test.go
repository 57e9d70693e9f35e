package sources

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

var _ admission.Sources = (*Cluster)(nil)

func TestNewClusterValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"negative resync", Options{ResyncPeriod: -time.Second}, "resync period: must not be negative"},
		{"negative grace", Options{GracePeriod: -time.Second}, "grace period: must not be negative"},
		{"ConfigMap without namespace", Options{WatchConfigMap: true}, "needs a namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCluster(fake.NewSimpleClientset(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCluster = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Ready names each source that has not synced, and is nil once all have.
func TestReady(t *testing.T) {
	client := fake.NewSimpleClientset()
	// Hold the informers' initial lists until released. The fake serializes all calls
	// (a blocked reactor blocks every other), so the informers are released together;
	// the identities file is what stays not ready on its own.
	release := make(chan struct{})
	client.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return false, nil, nil // on to the object tracker
	})
	path := filepath.Join(t.TempDir(), "identities.json")
	write(t, path, `{"identities":[{"namespace":"team"}]}`)
	c, err := NewCluster(client, Options{AnnotationPrefix: prefix, WatchConfigMap: true, Namespace: "eks", WatchNamespaces: true,
		IdentitiesFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); err == nil || err.Error() != "sources not started" {
		t.Errorf("Ready before Start = %v, want sources not started", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}

	fileErr := "identities file " + path + `: identities[0]: needs both "namespace" and "serviceAccount"`
	want := "sources not ready: ServiceAccount informer not synced; ConfigMap informer not synced; Namespace informer not synced; " + fileErr
	if err := c.Ready(); err == nil || err.Error() != want {
		t.Errorf("Ready = %v, want %q", err, want)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if err := c.WaitForReady(short); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("WaitForReady = %v, want it to say what is missing", err)
	}

	close(release)
	want = "sources not ready: " + fileErr
	eventually(t, "the informers' sync", func() bool { err := c.Ready(); return err != nil && err.Error() == want })

	write(t, path, identitiesJSON("team", "a"))
	eventually(t, "Ready", func() bool { return c.Ready() == nil })
}

func TestNamespace(t *testing.T) {
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"region": "eu-west-1"},
			Annotations: map[string]string{"owner": "me"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
	}
	t.Run("watched", func(t *testing.T) {
		client := fake.NewSimpleClientset(ns)
		c := startReady(t, client, Options{WatchNamespaces: true})
		want := &engine.NamespaceObject{Name: "team", Labels: map[string]string{"region": "eu-west-1"}, Annotations: map[string]string{"owner": "me"}}
		if diff := cmp.Diff(want, c.Namespace(context.Background(), "team")); diff != "" {
			t.Errorf("Namespace (-want +got):\n%s", diff)
		}
		if got := c.Namespace(context.Background(), "unknown"); got != nil {
			t.Errorf("unknown Namespace = %+v, want nil", got)
		}
		stored, _, _ := c.ns.informer.GetStore().GetByKey("team")
		if s := stored.(*corev1.Namespace); s.ManagedFields != nil || s.Spec.Finalizers != nil {
			t.Errorf("stored Namespace not stripped: %+v", s)
		}

		if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the new Namespace", func() bool { return c.Namespace(context.Background(), "new") != nil })
	})
	t.Run("not watched", func(t *testing.T) {
		client := fake.NewSimpleClientset(ns)
		c := startReady(t, client, Options{})
		if got := c.Namespace(context.Background(), "team"); got != nil {
			t.Errorf("Namespace = %+v, want nil when not watched", got)
		}
		if n := countActions(client, "list", "namespaces"); n != 0 {
			t.Errorf("Namespace lists = %d, want 0", n)
		}
	})
}

func TestIdentitiesCombinesSources(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.json")
	write(t, path, identitiesJSON("team", "a"))
	client := fake.NewSimpleClientset(roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/a":{"RoleARN":"arn:a"},"*/b":{"RoleARN":"arn:b"}}`))
	c := startReady(t, client, Options{WatchConfigMap: true, Namespace: "eks", IdentitiesFile: path})
	want := engine.Identities{
		ContainerCredentials: &engine.ContainerCredentialsIdentity{Namespace: "team", ServiceAccount: "a"},
		ConfigMap:            &engine.ConfigMapEntry{Key: "team/a", RoleARN: "arn:a"},
	}
	if diff := cmp.Diff(want, c.Identities("team", "a")); diff != "" {
		t.Errorf("Identities(team, a) (-want +got):\n%s", diff)
	}
	want = engine.Identities{ConfigMap: &engine.ConfigMapEntry{Key: "*/b", Wildcard: true, RoleARN: "arn:b"}}
	if diff := cmp.Diff(want, c.Identities("other", "b")); diff != "" {
		t.Errorf("Identities(other, b) (-want +got):\n%s", diff)
	}

	off := startReady(t, client, Options{})
	if diff := cmp.Diff(engine.Identities{}, off.Identities("team", "a")); diff != "" {
		t.Errorf("Identities with both sources off (-want +got):\n%s", diff)
	}
}

// Dump shows the ServiceAccount cache as policies see it; Clear empties the caches
// and the informers' next resync fills them again.
func TestDumpAndClear(t *testing.T) {
	client := fake.NewSimpleClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app", UID: "u1", ResourceVersion: "5",
			Annotations: map[string]string{prefix + "/role-arn": "arn", "other": "x"}}},
		serviceAccount("team", "plain", nil),
		roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/cm":{"RoleARN":"arn:cm"}}`),
	)
	c := startReady(t, client, Options{WatchConfigMap: true, Namespace: "eks", ResyncPeriod: time.Second})

	got, err := json.Marshal(c.Dump())
	if err != nil {
		t.Fatal(err)
	}
	want := `{` +
		`"team/app":{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"app","namespace":"team","uid":"u1","resourceVersion":"5","annotations":{"eks.amazonaws.com/role-arn":"arn"}}},` +
		`"team/plain":{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"plain","namespace":"team","uid":"","resourceVersion":"","annotations":{}}}` +
		`}`
	if string(got) != want {
		t.Errorf("Dump =\n%s\nwant\n%s", got, want)
	}

	c.Clear()
	if d := c.Dump().(map[string]ServiceAccountView); len(d) != 0 {
		t.Errorf("Dump after Clear = %v, want empty", d)
	}
	if e := c.Identities("team", "cm").ConfigMap; e != nil {
		t.Errorf("ConfigMap entry after Clear = %+v, want nil", e)
	}
	eventually(t, "the resync", func() bool {
		return len(c.Dump().(map[string]ServiceAccountView)) == 2 && c.Identities("team", "cm").ConfigMap != nil
	})
}

// Clear may run while requests read the caches and informers write them (go test -race).
func TestClearConcurrently(t *testing.T) {
	client := fake.NewSimpleClientset(serviceAccount("team", "app", nil))
	c := startReady(t, client, Options{WatchConfigMap: true, Namespace: "eks", GracePeriod: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			sa := serviceAccount("team", "app", map[string]string{prefix + "/n": string(rune('a' + i%26))})
			_, _ = client.CoreV1().ServiceAccounts("team").Update(context.Background(), sa, metav1.UpdateOptions{})
			time.Sleep(time.Millisecond)
		}
	}()
	for ctx.Err() == nil {
		c.Clear()
		_, _ = c.ServiceAccount(context.Background(), "team", "app", true)
		_ = c.Dump()
		_ = c.Identities("team", "app")
	}
	<-done
}
