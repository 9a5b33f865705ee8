package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// TLS is a certificate authority made for one test: it signs a server
// certificate for 127.0.0.1 and localhost, and client certificates for
// certificate authentication. Nothing is read from or left on the machine
// but the files the test writes.
type TLS struct {
	// CA is the authority's certificate (PEM): what a client's
	// sslrootcert and the servers' ssl_ca_file hold.
	CA     []byte
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// Names of the TLS files in a server's data directory.
const (
	tlsCAFile   = "root.crt"
	tlsCertFile = "server.crt"
	tlsKeyFile  = "server.key"
)

// NewTLS makes a certificate authority valid for a day.
func NewTLS(t testing.TB) *TLS {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "pgms test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("pgtest: make a CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &TLS{CA: pemBlock("CERTIFICATE", der), caCert: cert, caKey: key}
}

// ServerOptions returns opts with TLS on: the CA, a server certificate and
// its key in the data directory, and the ssl settings naming them
// (ssl_ca_file too, so that clients may authenticate by certificate).
func (c *TLS) ServerOptions(t testing.TB, opts Options) Options {
	t.Helper()
	cert, key := c.sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"},
		// libpq before PostgreSQL 15 compares the host only with dNSName
		// entries, so the address is one of those too.
		DNSNames:    []string{"localhost", "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	out := opts
	out.Files = map[string][]byte{tlsCAFile: c.CA, tlsCertFile: cert, tlsKeyFile: key}
	for k, v := range opts.Files {
		out.Files[k] = v
	}
	out.Settings = map[string]string{"ssl": "on", "ssl_cert_file": tlsCertFile, "ssl_key_file": tlsKeyFile, "ssl_ca_file": tlsCAFile}
	for k, v := range opts.Settings {
		out.Settings[k] = v
	}
	return out
}

// ClientCert returns a client certificate for a role (its common name,
// which cert authentication compares with the role's name) and its key,
// both PEM.
func (c *TLS) ClientCert(t testing.TB, role string) (cert, key []byte) {
	t.Helper()
	return c.sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: role},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// sign completes a leaf certificate template and signs it with the CA.
func (c *TLS) sign(t testing.TB, tmpl *x509.Certificate) (cert, key []byte) {
	t.Helper()
	k := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &k.PublicKey, c.caKey)
	if err != nil {
		t.Fatalf("pgtest: sign a certificate for %s: %v", tmpl.Subject.CommonName, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", pkcs8)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("pgtest: make a key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}
