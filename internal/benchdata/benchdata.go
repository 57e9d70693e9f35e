// Package benchdata builds the pods the benchmarks use: realistic, already defaulted
// pods as kube-apiserver sends them to webhooks (ownerReferences, managedFields, the
// kube-api-access volume mounted everywhere, default tolerations, probes, resources).
// They are generated rather than stored so their shape is documented by the code.
package benchdata

import (
	"encoding/json"
	"fmt"
)

// Size names a benchmark pod.
type Size string

const (
	// Small is 1 container with no env.
	Small Size = "small"
	// Typical is 3 containers (12/6/8 env, probes and securityContext on 2) and 2 init
	// containers (6/4 env), 6 volumes, 4 annotations and a nodeSelector.
	Typical Size = "typical"
	// Big is 10 containers of 50 env each, with probes, and 3 volumes.
	Big Size = "big"
)

// Sizes lists every size, smallest first.
var Sizes = []Size{Small, Typical, Big}

// Namespace and ServiceAccount of every benchmark pod.
const (
	Namespace      = "payments"
	ServiceAccount = "payments-sa"
	RoleARN        = "arn:aws:iam::111122223333:role/payments"
)

type spec struct {
	containers []int // env count per container
	inits      []int // env count per init container
	probes     int   // how many containers get probes and a securityContext
	volumes    int   // volumes besides kube-api-access
	annots     int
}

var specs = map[Size]spec{
	Small:   {containers: []int{0}, volumes: 0, annots: 0},
	Typical: {containers: []int{12, 6, 8}, inits: []int{6, 4}, probes: 2, volumes: 5, annots: 4},
	Big:     {containers: []int{50, 50, 50, 50, 50, 50, 50, 50, 50, 50}, probes: 10, volumes: 2, annots: 2},
}

// Pod returns the pod of the given size as a JSON object (decoded, so callers can
// change it).
func Pod(size Size) map[string]any {
	s, ok := specs[size]
	if !ok {
		panic("benchdata: unknown size " + string(size))
	}
	containers := make([]any, len(s.containers))
	for i, n := range s.containers {
		containers[i] = container(fmt.Sprintf("app-%d", i), n, i < s.probes)
	}
	inits := make([]any, len(s.inits))
	for i, n := range s.inits {
		inits[i] = container(fmt.Sprintf("init-%d", i), n, false)
	}
	volumes := []any{kubeAPIAccess()}
	for i := 0; i < s.volumes; i++ {
		switch i % 3 {
		case 0:
			volumes = append(volumes, map[string]any{"name": fmt.Sprintf("config-%d", i), "configMap": map[string]any{"name": fmt.Sprintf("payments-config-%d", i), "defaultMode": 420}})
		case 1:
			volumes = append(volumes, map[string]any{"name": fmt.Sprintf("secret-%d", i), "secret": map[string]any{"secretName": fmt.Sprintf("payments-secret-%d", i), "defaultMode": 420}})
		default:
			volumes = append(volumes, map[string]any{"name": fmt.Sprintf("scratch-%d", i), "emptyDir": map[string]any{}})
		}
	}
	annotations := map[string]any{}
	for i := 0; i < s.annots; i++ {
		annotations[fmt.Sprintf("example.com/annotation-%d", i)] = fmt.Sprintf("value-%d", i)
	}
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"generateName": "payments-api-7d4b9c5f8-",
			"namespace":    Namespace,
			"labels":       map[string]any{"app": "payments-api", "pod-template-hash": "7d4b9c5f8", "team": "payments"},
			"annotations":  annotations,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "payments-api-7d4b9c5f8",
				"uid": "0b6e2c1e-3d5f-4a8e-9c71-2f4d6b8a0c13", "controller": true, "blockOwnerDeletion": true,
			}},
			"managedFields": []any{map[string]any{
				"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
				"time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
				"fieldsV1": managedFieldsV1(containers),
			}},
		},
		"spec": map[string]any{
			"serviceAccountName":            ServiceAccount,
			"serviceAccount":                ServiceAccount,
			"containers":                    containers,
			"volumes":                       volumes,
			"restartPolicy":                 "Always",
			"terminationGracePeriodSeconds": 30,
			"dnsPolicy":                     "ClusterFirst",
			"securityContext":               map[string]any{},
			"schedulerName":                 "default-scheduler",
			"enableServiceLinks":            true,
			"preemptionPolicy":              "PreemptLowerPriority",
			"priority":                      0,
			"tolerations": []any{
				map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
				map[string]any{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
			},
		},
	}
	if len(inits) > 0 {
		pod["spec"].(map[string]any)["initContainers"] = inits
	}
	if size == Typical {
		pod["spec"].(map[string]any)["nodeSelector"] = map[string]any{"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m6i.large"}
	}
	return pod
}

// PodJSON returns the pod as JSON.
func PodJSON(size Size) []byte {
	b, err := json.Marshal(Pod(size))
	if err != nil {
		panic(err)
	}
	return b
}

// Review returns an admission.k8s.io/v1 AdmissionReview for a CREATE of the pod.
func Review(size Size) []byte {
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":             "705ab4f5-6393-11e8-b7cc-42010a800002",
			"kind":            map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource":        map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"requestKind":     map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"requestResource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"namespace":       Namespace,
			"operation":       "CREATE",
			"userInfo":        map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "3a1f2b4c-5d6e-4f70-8192-a3b4c5d6e7f8", "groups": []any{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			"object":          Pod(size),
			"oldObject":       nil,
			"dryRun":          false,
			"options":         map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
		},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func container(name string, envs int, probes bool) map[string]any {
	env := make([]any, envs)
	for i := range env {
		env[i] = map[string]any{"name": fmt.Sprintf("APP_SETTING_%02d", i), "value": fmt.Sprintf("value-%02d-of-%s", i, name)}
	}
	c := map[string]any{
		"name":                     name,
		"image":                    "registry.example.com/payments/" + name + ":1.4.2",
		"ports":                    []any{map[string]any{"name": "http", "containerPort": 8080, "protocol": "TCP"}},
		"resources":                map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "256Mi"}},
		"volumeMounts":             []any{map[string]any{"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}},
		"terminationMessagePath":   "/dev/termination-log",
		"terminationMessagePolicy": "File",
		"imagePullPolicy":          "IfNotPresent",
	}
	if envs > 0 {
		c["env"] = env
	}
	if probes {
		probe := func(path string) map[string]any {
			return map[string]any{"httpGet": map[string]any{"path": path, "port": 8080, "scheme": "HTTP"},
				"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
		}
		c["livenessProbe"] = probe("/healthz")
		c["readinessProbe"] = probe("/ready")
		c["securityContext"] = map[string]any{"runAsNonRoot": true, "runAsUser": 10001, "allowPrivilegeEscalation": false,
			"capabilities": map[string]any{"drop": []any{"ALL"}}, "readOnlyRootFilesystem": true}
	}
	return c
}

func kubeAPIAccess() map[string]any {
	return map[string]any{"name": "kube-api-access-x7k2p", "projected": map[string]any{"defaultMode": 420, "sources": []any{
		map[string]any{"serviceAccountToken": map[string]any{"expirationSeconds": 3607, "path": "token"}},
		map[string]any{"configMap": map[string]any{"name": "kube-root-ca.crt", "items": []any{map[string]any{"key": "ca.crt", "path": "ca.crt"}}}},
		map[string]any{"downwardAPI": map[string]any{"items": []any{map[string]any{"path": "namespace", "fieldRef": map[string]any{"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}}},
	}}}
}

// managedFieldsV1 mirrors the spec's containers, as the controller manager's entry does.
func managedFieldsV1(containers []any) map[string]any {
	cs := map[string]any{}
	for _, c := range containers {
		name := c.(map[string]any)["name"].(string)
		fields := map[string]any{".": map[string]any{}, "f:image": map[string]any{}, "f:imagePullPolicy": map[string]any{},
			"f:name": map[string]any{}, "f:resources": map[string]any{".": map[string]any{}, "f:limits": map[string]any{}, "f:requests": map[string]any{}},
			"f:terminationMessagePath": map[string]any{}, "f:terminationMessagePolicy": map[string]any{}}
		if env, ok := c.(map[string]any)["env"].([]any); ok {
			envFields := map[string]any{".": map[string]any{}}
			for _, e := range env {
				envFields[fmt.Sprintf(`k:{"name":"%s"}`, e.(map[string]any)["name"])] = map[string]any{".": map[string]any{}, "f:name": map[string]any{}, "f:value": map[string]any{}}
			}
			fields["f:env"] = envFields
		}
		cs[fmt.Sprintf(`k:{"name":"%s"}`, name)] = fields
	}
	return map[string]any{
		"f:metadata": map[string]any{"f:generateName": map[string]any{}, "f:labels": map[string]any{".": map[string]any{}, "f:app": map[string]any{}, "f:pod-template-hash": map[string]any{}},
			"f:ownerReferences": map[string]any{".": map[string]any{}, `k:{"uid":"0b6e2c1e-3d5f-4a8e-9c71-2f4d6b8a0c13"}`: map[string]any{}}},
		"f:spec": map[string]any{"f:containers": cs, "f:dnsPolicy": map[string]any{}, "f:enableServiceLinks": map[string]any{},
			"f:restartPolicy": map[string]any{}, "f:schedulerName": map[string]any{}, "f:securityContext": map[string]any{},
			"f:terminationGracePeriodSeconds": map[string]any{}},
	}
}
