package auth

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pushgrid/pushgrid/internal/schema"
)

// Modes of Config.Mode.
const (
	ModeNone = "none"
	ModeJWT  = "jwt"
	ModeHook = "hook"
)

// Config is the [auth] table: how a node decides who a client is before
// its upgrade (PROTOCOL.md §4). Each field's tags declare its key once.
type Config struct {
	Mode          string        `toml:"mode" name:"auth" env:"PUSHGRID_AUTH" default:"none" help:"How a client's user is decided before the upgrade. none: the user query parameter, else the first join's user, else anon-<conn> (trusted networks only); jwt: a signed token; hook: a backend answers a NATS request on <prefix>.auth."`
	Secret        string        `toml:"secret" secret:"" name:"auth-secret" env:"PUSHGRID_AUTH_SECRET" help:"jwt: the HMAC key of HS256, HS384 and HS512 tokens (at least 32 bytes). Give it or public_key_file, not both."`
	PublicKeyFile string        `toml:"public_key_file" name:"auth-public-key-file" env:"PUSHGRID_AUTH_PUBLIC_KEY_FILE" help:"jwt: a PEM public key (RSA: RS256/384/512, ECDSA: ES256/384, Ed25519: EdDSA); tokens signed any other way are refused."`
	Issuer        string        `toml:"issuer" name:"auth-issuer" env:"PUSHGRID_AUTH_ISSUER" help:"jwt: when set, a token's iss must equal it."`
	Audience      string        `toml:"audience" name:"auth-audience" env:"PUSHGRID_AUTH_AUDIENCE" help:"jwt: when set, a token's aud must contain it."`
	Cookie        string        `toml:"cookie" name:"auth-cookie" env:"PUSHGRID_AUTH_COOKIE" default:"pushgrid_token" help:"The cookie a token is read from when there is no Authorization: Bearer header and no token query parameter."`
	Leeway        time.Duration `toml:"leeway" name:"auth-leeway" env:"PUSHGRID_AUTH_LEEWAY" default:"30s" help:"Clock skew allowed on exp and nbf; a connection is closed with 4003 at exp plus it (0s to 1h)."`
	Timeout       time.Duration `toml:"timeout" name:"auth-timeout" env:"PUSHGRID_AUTH_TIMEOUT" default:"2s" help:"hook: how long a node waits for the backend's answer before refusing the upgrade with 503 (10ms to 1m)."`
	// Logger receives a line for each hook that failed or answered
	// something that is neither an identity nor a refusal: the client only
	// sees 503 "auth backend unavailable", so the reason is told here.
	// Nil discards them.
	Logger *slog.Logger `toml:"-" kong:"-"`
}

// setDefaults fills the zero fields of a Config built in Go, except
// Leeway, where zero is a value of its own (no skew allowed).
func (c *Config) setDefaults() {
	leeway := c.Leeway
	schema.Defaults(c)
	c.Leeway = leeway
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Check reports the first setting that cannot work, naming its key. It
// reads public_key_file, so that pushgrid config check finds a key that
// is missing or of no use.
func (c *Config) Check() error {
	switch c.Mode {
	case ModeNone, ModeHook:
		// A key of jwt mode under another mode is a configuration that
		// forgot auth.mode: refused, rather than a node open to anyone.
		for _, k := range []struct{ key, v string }{
			{"auth.secret", c.Secret}, {"auth.public_key_file", c.PublicKeyFile},
			{"auth.issuer", c.Issuer}, {"auth.audience", c.Audience},
		} {
			if k.v != "" {
				return fmt.Errorf("%s is set but auth.mode is %q: it is used with auth.mode = \"jwt\" only", k.key, c.Mode)
			}
		}
	case ModeJWT:
		switch {
		case c.Secret == "" && c.PublicKeyFile == "":
			return fmt.Errorf("auth.secret: mode jwt needs auth.secret or auth.public_key_file")
		case c.Secret != "" && c.PublicKeyFile != "":
			return fmt.Errorf("auth.secret: give auth.secret or auth.public_key_file, not both")
		case c.Secret != "" && len(c.Secret) < 32:
			return fmt.Errorf("auth.secret: %d bytes is too short for an HMAC key; use at least 32", len(c.Secret))
		case c.PublicKeyFile != "":
			if _, err := loadVerifier(c.PublicKeyFile); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("auth.mode: %q is not none, jwt or hook", c.Mode)
	}
	if !validCookieName(c.Cookie) {
		return fmt.Errorf("auth.cookie: %q is not a cookie name (1 to 128 bytes of letters, digits and !#$%%&'*+-.^_`|~)", c.Cookie)
	}
	if c.Leeway < 0 || c.Leeway > time.Hour {
		return fmt.Errorf("auth.leeway: %v is not between 0s and 1h0m0s", c.Leeway)
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > time.Minute {
		return fmt.Errorf("auth.timeout: %v is not between 10ms and 1m0s", c.Timeout)
	}
	return nil
}

// validCookieName reports whether s is a cookie name (an RFC 7230 token)
// of at most 128 bytes.
func validCookieName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
