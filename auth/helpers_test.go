package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

// testSecret is an HMAC key of the minimum length Check accepts.
const testSecret = "0123456789abcdef0123456789abcdef"

// testKeys are the private keys of each supported public-key type, made
// once per test binary: an RSA key takes a while to generate.
type testKeys struct {
	rsa  *rsa.PrivateKey
	p256 *ecdsa.PrivateKey
	p384 *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
}

var generateKeys = sync.OnceValues(func() (testKeys, error) {
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return k, err
	}
	if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return k, err
	}
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	return k, err
})

func mustKeys(tb testing.TB) testKeys {
	tb.Helper()
	k, err := generateKeys()
	if err != nil {
		tb.Fatalf("generate keys: %v", err)
	}
	return k
}

// mustPEMFile writes one PEM block to a new file and returns its path.
func mustPEMFile(tb testing.TB, blockType string, der []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// mustPublicKeyFile writes pub as a PKIX PUBLIC KEY PEM file, the form
// openssl pkey -pubout writes, and returns its path.
func mustPublicKeyFile(tb testing.TB, pub any) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return mustPEMFile(tb, "PUBLIC KEY", der)
}

func mustNew(tb testing.TB, cfg Config) *Authenticator {
	tb.Helper()
	a, err := New(cfg, "node-1", nil)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

// mustSign signs claims with method and key.
func mustSign(tb testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// asHTTPError returns err's *gateway.HTTPError, failing the test when it
// has none.
func asHTTPError(tb testing.TB, err error) *gateway.HTTPError {
	tb.Helper()
	var he *gateway.HTTPError
	if !errors.As(err, &he) {
		tb.Fatalf("error %v (%T) is not a *gateway.HTTPError", err, err)
	}
	return he
}

func sameIdentity(a, b session.Identity) bool {
	return a.User == b.User && a.Verified == b.Verified && a.Expires.Equal(b.Expires) &&
		slices.EqualFunc(a.Channels, b.Channels, func(p, q session.Pattern) bool { return p.String() == q.String() })
}

func patterns(ss ...string) []session.Pattern {
	ps := make([]session.Pattern, len(ss))
	for i, s := range ss {
		ps[i] = session.MustPattern(s)
	}
	return ps
}
