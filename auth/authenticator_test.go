package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewErrors(t *testing.T) {
	k := mustKeys(t)
	// Built, not generated: crypto/rsa refuses to generate keys this
	// small. A modulus needs no factors to be parsed.
	small := &rsa.PublicKey{N: new(big.Int).SetBit(big.NewInt(1), 1023, 1), E: 65537}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.ed)
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "key.der")
	if err := os.WriteFile(notPEM, x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := func(context.Context, []byte) ([]byte, error) { return nil, errors.New("unused") }
	jwtKey := func(path string) Config { return Config{Mode: ModeJWT, PublicKeyFile: path} }

	tests := []struct {
		name string
		cfg  Config
		hook HookFunc
		want []string // the error starts with the first and contains the others
	}{
		{"unknown mode", Config{Mode: "ldap"}, nil, []string{"auth.mode:", "ldap"}},
		{"jwt without a key", Config{Mode: ModeJWT}, nil, []string{"auth.secret:"}},
		{"short secret", Config{Mode: ModeJWT, Secret: "hunter2"}, nil, []string{"auth.secret:", "too short"}},
		{"secret and key file", Config{Mode: ModeJWT, Secret: testSecret, PublicKeyFile: "k.pem"}, nil, []string{"auth.secret:", "not both"}},
		{"timeout too short", Config{Mode: ModeHook, Timeout: time.Millisecond}, hook, []string{"auth.timeout:"}},
		{"leeway negative", Config{Mode: ModeJWT, Secret: testSecret, Leeway: -time.Second}, nil, []string{"auth.leeway:"}},
		{"hook without NATS", Config{Mode: ModeHook}, nil, []string{"auth.mode:", "NATS"}},
		{"missing key file", jwtKey(filepath.Join(t.TempDir(), "nope.pem")), nil, []string{"auth.public_key_file:", "nope.pem", "no such file"}},
		{"not PEM", jwtKey(notPEM), nil, []string{"auth.public_key_file:", "key.der", "no PEM block"}},
		{"private key", jwtKey(mustPEMFile(t, "PRIVATE KEY", pkcs8)), nil, []string{"auth.public_key_file:", "PRIVATE KEY", "public key only"}},
		{"broken public key", jwtKey(mustPEMFile(t, "PUBLIC KEY", []byte("junk"))), nil, []string{"auth.public_key_file:", "key.pem", "PUBLIC KEY block"}},
		{"small RSA key", jwtKey(mustPublicKeyFile(t, small)), nil, []string{"auth.public_key_file:", "1024 bits"}},
		{"P-521 key", jwtKey(mustPublicKeyFile(t, &p521.PublicKey)), nil, []string{"auth.public_key_file:", "P-521"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg, "node-1", tc.hook)
			if err == nil {
				t.Fatalf("New gave %+v, want an error", a)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.want[0]) {
				t.Fatalf("error %q does not start with %q", msg, tc.want[0])
			}
			for _, w := range tc.want[1:] {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestNewDefaults checks what a Config built in Go gets: every default
// but Leeway, where zero means no skew.
func TestNewDefaults(t *testing.T) {
	a := mustNew(t, Config{})
	if a.Mode() != ModeNone || a.cfg.Cookie != "pushgrid_token" || a.cfg.Timeout != 2*time.Second || a.Leeway() != 0 || a.cfg.Logger == nil {
		t.Fatalf("defaults: mode %q, cookie %q, timeout %v, leeway %v, logger %v", a.Mode(), a.cfg.Cookie, a.cfg.Timeout, a.Leeway(), a.cfg.Logger)
	}
	a = mustNew(t, Config{Mode: ModeJWT, Secret: testSecret, Leeway: 5 * time.Second})
	if a.Mode() != ModeJWT || a.Leeway() != 5*time.Second {
		t.Fatalf("Mode %q, Leeway %v", a.Mode(), a.Leeway())
	}
}

func TestAuthenticateModeNone(t *testing.T) {
	a := mustNew(t, Config{Mode: ModeNone})
	r := httptest.NewRequest("GET", "/ws?user=alice", nil)
	if _, err := a.Authenticate(r, testRemote); !errors.Is(err, ErrModeNone) {
		t.Fatalf("Authenticate in mode none: %v, want ErrModeNone", err)
	}
}
