package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

var testRemote = netip.MustParseAddr("203.0.113.7")

// bearerRequest is an upgrade request carrying token in its Authorization
// header.
func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// TestJWTClaims covers the claim rules of PROTOCOL.md §4 on HS256 tokens;
// TestJWTKeyTypes covers the algorithms.
func TestJWTClaims(t *testing.T) {
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	hs := func(c jwt.MapClaims) string { return mustSign(t, jwt.SigningMethodHS256, []byte(testSecret), c) }
	secret := Config{Mode: ModeJWT, Secret: testSecret, Leeway: 30 * time.Second}
	noLeeway := Config{Mode: ModeJWT, Secret: testSecret}
	withIss := Config{Mode: ModeJWT, Secret: testSecret, Issuer: "https://login.example.com"}
	withAud := Config{Mode: ModeJWT, Secret: testSecret, Audience: "pushgrid"}

	tests := []struct {
		name    string
		cfg     Config
		token   string
		want    session.Identity
		wantErr string // the 401's message; "" for an accepted token
	}{
		{name: "sub only", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice"}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "exp and channels", cfg: secret,
			token: hs(jwt.MapClaims{"sub": "alice", "exp": exp, "channels": []string{"news.>", "room.*.chat", "@alice"}}),
			want:  session.Identity{User: "alice", Verified: true, Expires: time.Unix(exp, 0), Channels: patterns("news.>", "room.*.chat", "@alice")}},
		{name: "channels null", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": nil}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "channels empty", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": []string{}}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "channels bad pattern", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": []string{"news", "a..b"}}),
			wantErr: "invalid token: channels claim is not an array of channel patterns"},
		{name: "channels > not last", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": []string{">.news"}}),
			wantErr: "invalid token: channels claim is not an array of channel patterns"},
		{name: "channels a string", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": "news.>"}),
			wantErr: "invalid token: channels claim is not an array of channel patterns"},
		{name: "channels numbers", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": []int{1}}),
			wantErr: "invalid token: channels claim is not an array of channel patterns"},
		{name: "channels with null", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "channels": []any{"news", nil}}),
			wantErr: "invalid token: channels claim is not an array of channel patterns"},
		{name: "sub missing", cfg: secret, token: hs(jwt.MapClaims{"exp": exp}),
			wantErr: "invalid token: sub is missing"},
		{name: "sub empty", cfg: secret, token: hs(jwt.MapClaims{"sub": ""}),
			wantErr: "invalid token: sub is missing"},
		{name: "sub invalid", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice smith"}),
			wantErr: "invalid token: sub is not a valid user name"},
		{name: "sub anon", cfg: secret, token: hs(jwt.MapClaims{"sub": "anon-42"}),
			wantErr: "invalid token: sub is not a valid user name"},
		{name: "sub not a string", cfg: secret, token: hs(jwt.MapClaims{"sub": 42}),
			wantErr: "invalid token: token is malformed"},
		{name: "expired", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Minute).Unix()}),
			wantErr: "invalid token: token is expired"},
		{name: "expired within leeway", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "exp": now.Add(-10 * time.Second).Unix()}),
			want: session.Identity{User: "alice", Verified: true, Expires: time.Unix(now.Add(-10*time.Second).Unix(), 0)}},
		{name: "expired without leeway", cfg: noLeeway, token: hs(jwt.MapClaims{"sub": "alice", "exp": now.Add(-10 * time.Second).Unix()}),
			wantErr: "invalid token: token is expired"},
		{name: "nbf in the future", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "nbf": now.Add(time.Minute).Unix()}),
			wantErr: "invalid token: token is not valid yet"},
		{name: "nbf within leeway", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "nbf": now.Add(10 * time.Second).Unix()}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "nbf without leeway", cfg: noLeeway, token: hs(jwt.MapClaims{"sub": "alice", "nbf": now.Add(10 * time.Second).Unix()}),
			wantErr: "invalid token: token is not valid yet"},
		{name: "nbf passed", cfg: noLeeway, token: hs(jwt.MapClaims{"sub": "alice", "nbf": now.Add(-time.Second).Unix()}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "exp not a number", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "exp": "tomorrow"}),
			wantErr: "invalid token: token is malformed"},
		{name: "iss matches", cfg: withIss, token: hs(jwt.MapClaims{"sub": "alice", "iss": "https://login.example.com"}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "iss wrong", cfg: withIss, token: hs(jwt.MapClaims{"sub": "alice", "iss": "https://evil.example.com"}),
			wantErr: "invalid token: wrong issuer"},
		{name: "iss missing", cfg: withIss, token: hs(jwt.MapClaims{"sub": "alice"}),
			wantErr: "invalid token: iss is missing"},
		{name: "iss not configured", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice", "iss": "anyone"}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "aud matches", cfg: withAud, token: hs(jwt.MapClaims{"sub": "alice", "aud": "pushgrid"}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "aud list contains", cfg: withAud, token: hs(jwt.MapClaims{"sub": "alice", "aud": []string{"billing", "pushgrid"}}),
			want: session.Identity{User: "alice", Verified: true}},
		{name: "aud wrong", cfg: withAud, token: hs(jwt.MapClaims{"sub": "alice", "aud": "billing"}),
			wantErr: "invalid token: wrong audience"},
		{name: "aud missing", cfg: withAud, token: hs(jwt.MapClaims{"sub": "alice"}),
			wantErr: "invalid token: aud is missing"},
		{name: "bad signature", cfg: secret,
			token:   mustSign(t, jwt.SigningMethodHS256, []byte("another-secret-of-32-bytes-or-so"), jwt.MapClaims{"sub": "alice"}),
			wantErr: "invalid token: signature is invalid"},
		{name: "tampered payload", cfg: secret, token: tamper(t, hs(jwt.MapClaims{"sub": "alice"}), `{"sub":"admin"}`),
			wantErr: "invalid token: signature is invalid"},
		{name: "alg none", cfg: secret,
			token:   mustSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "alice"}),
			wantErr: "invalid token: algorithm none is not allowed"},
		{name: "alg none with a signature", cfg: secret, token: rawToken(`{"alg":"none"}`, `{"sub":"alice"}`, "c2ln"),
			wantErr: "invalid token: algorithm none is not allowed"},
		{name: "alg NONE", cfg: secret, token: rawToken(`{"alg":"NONE"}`, `{"sub":"alice"}`, ""),
			wantErr: "invalid token: algorithm is missing or unknown"},
		{name: "alg missing", cfg: secret, token: rawToken(`{"typ":"JWT"}`, `{"sub":"alice"}`, ""),
			wantErr: "invalid token: algorithm is missing or unknown"},
		{name: "one segment", cfg: secret, token: "garbage",
			wantErr: "invalid token: token is malformed"},
		{name: "four segments", cfg: secret, token: hs(jwt.MapClaims{"sub": "alice"}) + ".x",
			wantErr: "invalid token: token is malformed"},
		{name: "header not base64", cfg: secret, token: "!!!.e30.",
			wantErr: "invalid token: token is malformed"},
		{name: "claims not JSON", cfg: secret, token: rawToken(`{"alg":"HS256"}`, `not json`, ""),
			wantErr: "invalid token: token is malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustNew(t, tc.cfg)
			id, err := a.Authenticate(bearerRequest(tc.token), testRemote)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if !sameIdentity(id, tc.want) {
					t.Fatalf("identity %+v, want %+v", id, tc.want)
				}
				return
			}
			he := asHTTPError(t, err)
			if he.Status != http.StatusUnauthorized || he.Msg != tc.wantErr {
				t.Fatalf("refusal %d %q, want 401 %q", he.Status, he.Msg, tc.wantErr)
			}
			if strings.Contains(he.Msg, tc.token) {
				t.Fatalf("refusal %q quotes the token", he.Msg)
			}
		})
	}
}

// rawToken joins a header, claims and signature the way a JWT does,
// without signing: for tokens no library would make.
func rawToken(header, claims, sig string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims)) + "." + sig
}

// tamper replaces the claims of a signed token, keeping its signature.
func tamper(tb testing.TB, token, claims string) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}

// TestJWTKeyTypes signs a token with every algorithm under every kind of
// configured key: only the algorithms of the key's own type pass.
func TestJWTKeyTypes(t *testing.T) {
	k := mustKeys(t)
	claims := jwt.MapClaims{"sub": "alice"}
	signers := []struct {
		method jwt.SigningMethod
		key    any
	}{
		{jwt.SigningMethodHS256, []byte(testSecret)},
		{jwt.SigningMethodHS384, []byte(testSecret)},
		{jwt.SigningMethodHS512, []byte(testSecret)},
		{jwt.SigningMethodRS256, k.rsa},
		{jwt.SigningMethodRS384, k.rsa},
		{jwt.SigningMethodRS512, k.rsa},
		{jwt.SigningMethodPS256, k.rsa},
		{jwt.SigningMethodES256, k.p256},
		{jwt.SigningMethodES384, k.p384},
		{jwt.SigningMethodEdDSA, k.ed},
	}
	keys := []struct {
		name  string
		cfg   Config
		valid []string
	}{
		{"secret", Config{Mode: ModeJWT, Secret: testSecret}, []string{"HS256", "HS384", "HS512"}},
		{"RSA", Config{Mode: ModeJWT, PublicKeyFile: mustPublicKeyFile(t, &k.rsa.PublicKey)}, []string{"RS256", "RS384", "RS512"}},
		{"RSA PKCS1", Config{Mode: ModeJWT, PublicKeyFile: mustPEMFile(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey))}, []string{"RS256", "RS384", "RS512"}},
		{"ECDSA P-256", Config{Mode: ModeJWT, PublicKeyFile: mustPublicKeyFile(t, &k.p256.PublicKey)}, []string{"ES256"}},
		{"ECDSA P-256 certificate", Config{Mode: ModeJWT, PublicKeyFile: mustCertificateFile(t, k.p256)}, []string{"ES256"}},
		{"ECDSA P-384", Config{Mode: ModeJWT, PublicKeyFile: mustPublicKeyFile(t, &k.p384.PublicKey)}, []string{"ES384"}},
		{"Ed25519", Config{Mode: ModeJWT, PublicKeyFile: mustPublicKeyFile(t, k.ed.Public())}, []string{"EdDSA"}},
	}
	for _, key := range keys {
		a := mustNew(t, key.cfg)
		for _, s := range signers {
			alg := s.method.Alg()
			t.Run(key.name+"/"+alg, func(t *testing.T) {
				id, err := a.Authenticate(bearerRequest(mustSign(t, s.method, s.key, claims)), testRemote)
				if slices.Contains(key.valid, alg) {
					if err != nil || id.User != "alice" {
						t.Fatalf("got %+v, %v; want alice", id, err)
					}
					return
				}
				he := asHTTPError(t, err)
				if want := "invalid token: algorithm " + alg + " is not allowed"; he.Status != http.StatusUnauthorized || he.Msg != want {
					t.Fatalf("refusal %d %q, want 401 %q", he.Status, he.Msg, want)
				}
			})
		}
	}
}

// mustCertificateFile writes a self-signed certificate of key as PEM.
func mustCertificateFile(tb testing.TB, key *ecdsa.PrivateKey) string {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tokens.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return mustPEMFile(tb, "CERTIFICATE", der)
}

// TestJWTKeyConfusion is the classic attack on libraries that let a
// token choose its algorithm: an HS256 token whose HMAC key is the
// server's RSA public key, which anyone may read.
func TestJWTKeyConfusion(t *testing.T) {
	k := mustKeys(t)
	path := mustPublicKeyFile(t, &k.rsa.PublicKey)
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, Config{Mode: ModeJWT, PublicKeyFile: path})
	token := mustSign(t, jwt.SigningMethodHS256, pemBytes, jwt.MapClaims{"sub": "admin"})
	_, err = a.Authenticate(bearerRequest(token), testRemote)
	he := asHTTPError(t, err)
	if he.Status != http.StatusUnauthorized || he.Msg != "invalid token: algorithm HS256 is not allowed" {
		t.Fatalf("refusal %d %q", he.Status, he.Msg)
	}
}

// TestJWTTokenSources checks that each source reaches the verification,
// and that a bad token in the first source found is not rescued by a good
// one further down.
func TestJWTTokenSources(t *testing.T) {
	good := mustSign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "alice"})
	tests := []struct {
		name    string
		cfg     Config
		setup   func(r *http.Request)
		wantErr string
	}{
		{"header", Config{}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+good) }, ""},
		{"query", Config{}, func(r *http.Request) { r.URL.RawQuery = "token=" + good }, ""},
		{"cookie", Config{}, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "pushgrid_token", Value: good}) }, ""},
		{"named cookie", Config{Cookie: "sess"}, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "sess", Value: good}) }, ""},
		{"other cookie", Config{Cookie: "sess"}, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "pushgrid_token", Value: good}) }, "invalid token: no token"},
		{"none", Config{}, func(*http.Request) {}, "invalid token: no token"},
		{"bad header, good query", Config{}, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer nonsense")
			r.URL.RawQuery = "token=" + good
		}, "invalid token: token is malformed"},
		{"basic header, good query", Config{}, func(r *http.Request) {
			r.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
			r.URL.RawQuery = "token=" + good
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Mode, cfg.Secret = ModeJWT, testSecret
			a := mustNew(t, cfg)
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			tc.setup(r)
			id, err := a.Authenticate(r, testRemote)
			if tc.wantErr == "" {
				if err != nil || id.User != "alice" {
					t.Fatalf("got %+v, %v; want alice", id, err)
				}
				return
			}
			if he := asHTTPError(t, err); he.Status != http.StatusUnauthorized || he.Msg != tc.wantErr {
				t.Fatalf("refusal %d %q, want 401 %q", he.Status, he.Msg, tc.wantErr)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	hs := func(c jwt.MapClaims) string { return mustSign(t, jwt.SigningMethodHS256, []byte(testSecret), c) }
	a := mustNew(t, Config{Mode: ModeJWT, Secret: testSecret, Issuer: "me"})

	id, err := a.Refresh(hs(jwt.MapClaims{"sub": "alice", "iss": "me", "exp": exp, "channels": []string{"news.>"}}))
	want := session.Identity{User: "alice", Verified: true, Expires: time.Unix(exp, 0), Channels: patterns("news.>")}
	if err != nil || !sameIdentity(id, want) {
		t.Fatalf("Refresh: %+v, %v; want %+v", id, err, want)
	}

	for token, wantErr := range map[string]string{
		"": "invalid token: no token",
		hs(jwt.MapClaims{"sub": "alice", "iss": "me", "exp": time.Now().Add(-time.Hour).Unix()}): "invalid token: token is expired",
		hs(jwt.MapClaims{"sub": "alice", "iss": "you"}):                                          "invalid token: wrong issuer",
		hs(jwt.MapClaims{"sub": "anon-1", "iss": "me"}):                                          "invalid token: sub is not a valid user name",
	} {
		_, err := a.Refresh(token)
		if err == nil || err.Error() != wantErr {
			t.Errorf("Refresh: %v, want %q", err, wantErr)
		}
		var he *gateway.HTTPError
		if errors.As(err, &he) {
			t.Errorf("Refresh error %v is an HTTPError: the session wants a plain one", err)
		}
	}

	// Modes without tokens refuse every refresh: the client reconnects.
	good := hs(jwt.MapClaims{"sub": "alice", "iss": "me"})
	for _, mode := range []string{ModeNone, ModeHook} {
		a, err := New(Config{Mode: mode}, "node-1", func(context.Context, []byte) ([]byte, error) {
			return nil, errors.New("the hook is not asked on a refresh")
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Refresh(good); !errors.Is(err, ErrNoRefresh) || !strings.Contains(err.Error(), "reconnect") {
			t.Errorf("mode %s: Refresh: %v, want ErrNoRefresh telling to reconnect", mode, err)
		}
	}
}
