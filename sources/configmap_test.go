package sources

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

func roleMappingConfigMap(ns, name, config string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string]string{RoleMappingKey: config},
	}
}

// mapped lists which of the probed ServiceAccounts the ConfigMap maps, and to which role.
func mapped(c *Cluster) map[string]string {
	out := map[string]string{}
	for _, k := range [][2]string{{"team", "a"}, {"team", "b"}, {"team", "c"}, {"other", "w"}} {
		if e := c.Identities(k[0], k[1]).ConfigMap; e != nil {
			out[k[0]+"/"+k[1]] = e.RoleARN
		}
	}
	return out
}

// TestRoleMappingConfigMap walks one ConfigMap through its life; each step waits
// until the source has seen it (the applied or rejected counter moved) and then
// checks the mappings exactly.
func TestRoleMappingConfigMap(t *testing.T) {
	client := fake.NewSimpleClientset()
	m := metrics.New()
	c := startReady(t, client, Options{WatchConfigMap: true, Namespace: "eks", Metrics: m})
	cms := client.CoreV1().ConfigMaps("eks")
	ctx := context.Background()
	counts := func() (applied, rejected, problems float64) {
		return value(t, m.SourceUpdates.WithLabelValues("configmap", "applied")),
			value(t, m.SourceUpdates.WithLabelValues("configmap", "rejected")),
			value(t, m.SourceProblems.WithLabelValues("configmap"))
	}

	steps := []struct {
		name string
		do   func() error
		// counter values once the step has been processed
		applied, rejected, problems float64
		want                        map[string]string
	}{
		{
			name: "add, a key without '/' is skipped",
			do: func() error {
				_, err := cms.Create(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName,
					`{"team/a":{"RoleARN":"arn:a"},"team/b":{"roleArn":"arn:b"},"*/w":{"RoleARN":"arn:w"},"nosash":{"RoleARN":"arn:x"}}`), metav1.CreateOptions{})
				return err
			},
			applied: 1, problems: 1,
			want: map[string]string{"team/a": "arn:a", "team/b": "arn:b", "other/w": "arn:w"},
		},
		{
			name: "update, a removed key disappears",
			do: func() error {
				_, err := cms.Update(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName,
					`{"team/a":{"RoleARN":"arn:a2"},"team/c":{"RoleARN":"arn:c"}}`), metav1.UpdateOptions{})
				return err
			},
			applied: 2, problems: 1,
			want: map[string]string{"team/a": "arn:a2", "team/c": "arn:c"},
		},
		{
			name: "invalid JSON keeps the previous mappings",
			do: func() error {
				_, err := cms.Update(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/a":`), metav1.UpdateOptions{})
				return err
			},
			applied: 2, rejected: 1, problems: 1,
			want: map[string]string{"team/a": "arn:a2", "team/c": "arn:c"},
		},
		{
			name: "a wrongly typed entry keeps the previous mappings",
			do: func() error {
				_, err := cms.Update(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/b":{"RoleARN":1}}`), metav1.UpdateOptions{})
				return err
			},
			applied: 2, rejected: 2, problems: 1,
			want: map[string]string{"team/a": "arn:a2", "team/c": "arn:c"},
		},
		{
			name: "a good version after bad ones applies",
			do: func() error {
				_, err := cms.Update(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/b":{"RoleARN":"arn:b3"},"x":{}}`), metav1.UpdateOptions{})
				return err
			},
			applied: 3, rejected: 2, problems: 2,
			want: map[string]string{"team/b": "arn:b3"},
		},
		{
			name: "other ConfigMaps are ignored",
			do: func() error {
				if _, err := cms.Create(ctx, roleMappingConfigMap("eks", "something-else", `{"team/a":{"RoleARN":"no"}}`), metav1.CreateOptions{}); err != nil {
					return err
				}
				if _, err := client.CoreV1().ConfigMaps("elsewhere").Create(ctx, roleMappingConfigMap("elsewhere", RoleMappingConfigMapName, `{"team/a":{"RoleARN":"no"}}`), metav1.CreateOptions{}); err != nil {
					return err
				}
				// A marker that this step's events have been handled.
				_, err := cms.Update(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/b":{"RoleARN":"arn:b4"}}`), metav1.UpdateOptions{})
				return err
			},
			applied: 4, rejected: 2, problems: 2,
			want: map[string]string{"team/b": "arn:b4"},
		},
		{
			name:    "delete removes every mapping",
			do:      func() error { return cms.Delete(ctx, RoleMappingConfigMapName, metav1.DeleteOptions{}) },
			applied: 5, rejected: 2, problems: 2,
			want: map[string]string{},
		},
		{
			name: "created again",
			do: func() error {
				_, err := cms.Create(ctx, roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"team/c":{"RoleARN":"arn:c6"}}`), metav1.CreateOptions{})
				return err
			},
			applied: 6, rejected: 2, problems: 2,
			want: map[string]string{"team/c": "arn:c6"},
		},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		eventually(t, st.name, func() bool {
			applied, rejected, _ := counts()
			return applied+rejected >= st.applied+st.rejected
		})
		applied, rejected, problems := counts()
		if applied != st.applied || rejected != st.rejected || problems != st.problems {
			t.Errorf("%s: applied, rejected, problems = %v, %v, %v; want %v, %v, %v",
				st.name, applied, rejected, problems, st.applied, st.rejected, st.problems)
		}
		if diff := cmp.Diff(st.want, mapped(c)); diff != "" {
			t.Errorf("%s: mappings (-want +got):\n%s", st.name, diff)
		}
	}
}

// The handlers never panic, whatever the informer hands them.
func TestRoleMappingHandlersTolerateOddObjects(t *testing.T) {
	s, err := newRoleMappingSource(fake.NewSimpleClientset(), "eks", 0, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	s.update(roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"a/b":{"RoleARN":"r"}}`))
	for _, obj := range []any{
		nil,
		"not a ConfigMap",
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RoleMappingConfigMapName}}, // no data: no mappings
		roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"/":{},"a/":{},"/b":{},"":{}}`),
		roleMappingConfigMap("eks", RoleMappingConfigMapName, `null`),
		roleMappingConfigMap("eks", RoleMappingConfigMapName, `[]`),
	} {
		s.update(obj)
	}
	if n := len(s.mappings()); n != 0 {
		t.Errorf("mappings = %v, want none", s.mappings())
	}

	s.update(roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"a/b":{"RoleARN":"r"}}`))
	s.remove(cache.DeletedFinalStateUnknown{Key: "eks/" + RoleMappingConfigMapName, Obj: roleMappingConfigMap("eks", RoleMappingConfigMapName, "")})
	if n := len(s.mappings()); n != 0 {
		t.Errorf("mappings after a tombstone = %v, want none", s.mappings())
	}
	s.update(roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"a/b":{"RoleARN":"r"}}`))
	s.remove(roleMappingConfigMap("eks", "something-else", ""))
	if n := len(s.mappings()); n != 1 {
		t.Errorf("mappings after another ConfigMap's delete = %v, want a/b", s.mappings())
	}
}

// A resync delivers the same version again; it is not parsed (nor counted) again.
func TestRoleMappingSameVersionSkipped(t *testing.T) {
	m := metrics.New()
	s, err := newRoleMappingSource(fake.NewSimpleClientset(), "eks", 0, m)
	if err != nil {
		t.Fatal(err)
	}
	cm := roleMappingConfigMap("eks", RoleMappingConfigMapName, `{"a/b":{},"bad":{}}`)
	cm.ResourceVersion = "7"
	s.update(cm)
	s.update(cm)
	if v := value(t, m.SourceUpdates.WithLabelValues("configmap", "applied")); v != 1 {
		t.Errorf("applied = %v, want 1", v)
	}
	if v := value(t, m.SourceProblems.WithLabelValues("configmap")); v != 1 {
		t.Errorf("problems = %v, want 1", v)
	}
	s.clear() // the debug route: the next resync brings the mappings back
	if n := len(s.mappings()); n != 0 {
		t.Errorf("mappings after clear = %v, want none", s.mappings())
	}
	s.update(cm)
	if n := len(s.mappings()); n != 1 {
		t.Errorf("mappings after a resync = %v, want a/b", s.mappings())
	}
}
