package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority generated for one test run.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // the CA certificate, PEM encoded (for caBundle, kubeconfig, AWS_CA_BUNDLE)
}

// NewCA returns a fresh self-signed ECDSA P-256 CA named cn, valid for a day.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pemBlock("CERTIFICATE", der)}, nil
}

// CertSpec describes a leaf certificate.
type CertSpec struct {
	CommonName   string
	Organization []string
	IPs          []net.IP
	DNSNames     []string
	Server       bool // serverAuth
	Client       bool // clientAuth
	NotAfter     time.Time
}

// Issue returns a PEM certificate and PEM (PKCS#8) ECDSA key signed by the CA.
func (ca *CA) Issue(s CertSpec) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	notAfter := s.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		IPAddresses:  s.IPs,
		DNSNames:     s.DNSNames,
	}
	if s.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", pk), nil
}

// IssueFiles issues a certificate and writes it to dir/name.crt and dir/name.key.
func (ca *CA) IssueFiles(dir, name string, s CertSpec) (certFile, keyFile string, err error) {
	c, k, err := ca.Issue(s)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := writeFiles(map[string][]byte{certFile: c, keyFile: k}); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// WebhookServingSpec is the serving certificate a webhook on 127.0.0.1 needs.
func WebhookServingSpec() CertSpec {
	return CertSpec{CommonName: "pod-identity-webhook", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}
}

// PKI is every certificate and key of a test cluster, as files under Dir.
type PKI struct {
	Dir string

	ClusterCA                       *CA
	CAFile                          string // cluster CA certificate
	APIServerCert, APIServerKey     string
	AdminCert, AdminKey             string // O=system:masters
	AdminCertPEM, AdminKeyPEM       []byte
	ServiceAccountKey               string // RSA private key (signing)
	ServiceAccountPub               string // RSA public key (verification)
	WebhookCA                       *CA
	WebhookCAFile                   string
	WebhookCertFile, WebhookKeyFile string // serving cert for 127.0.0.1
}

// NewPKI generates all certificates into dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir}
	var err error
	if p.ClusterCA, err = NewCA("e2e-cluster-ca"); err != nil {
		return nil, err
	}
	p.CAFile = filepath.Join(dir, "ca.crt")
	if p.APIServerCert, p.APIServerKey, err = p.ClusterCA.IssueFiles(dir, "apiserver", CertSpec{
		CommonName: "kube-apiserver",
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		Server:     true,
	}); err != nil {
		return nil, err
	}
	if p.AdminCertPEM, p.AdminKeyPEM, err = p.ClusterCA.Issue(CertSpec{CommonName: "e2e-admin", Organization: []string{"system:masters"}, Client: true}); err != nil {
		return nil, err
	}
	p.AdminCert, p.AdminKey = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	p.ServiceAccountKey, p.ServiceAccountPub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")

	if p.WebhookCA, err = NewCA("e2e-webhook-ca"); err != nil {
		return nil, err
	}
	p.WebhookCAFile = filepath.Join(dir, "webhook-ca.crt")
	if p.WebhookCertFile, p.WebhookKeyFile, err = p.WebhookCA.IssueFiles(dir, "webhook", WebhookServingSpec()); err != nil {
		return nil, err
	}
	return p, writeFiles(map[string][]byte{
		p.CAFile:            p.ClusterCA.PEM,
		p.AdminCert:         p.AdminCertPEM,
		p.AdminKey:          p.AdminKeyPEM,
		p.ServiceAccountKey: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)),
		p.ServiceAccountPub: pemBlock("PUBLIC KEY", saPub),
		p.WebhookCAFile:     p.WebhookCA.PEM,
	})
}

func writeFiles(files map[string][]byte) error {
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("serial: %v", err))
	}
	return n
}
