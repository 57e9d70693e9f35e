package cli

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
)

type kubernetesClient = kubernetes.Interface

// restConfig builds the API client configuration as upstream does: --kubeconfig and
// --kube-api, else the in-cluster configuration; QPS and burst 50.
func restConfig(cfg *config.Config) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig == "" && cfg.KubeAPI == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags(cfg.KubeAPI, cfg.Kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 50, 50
	rc.UserAgent = "pod-identity-webhook/" + Version
	return rc, nil
}

func kubeClientFor(rc *rest.Config) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(rc)
}

func kubeClient(cfg *config.Config) (kubernetes.Interface, error) {
	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	return kubeClientFor(rc)
}
