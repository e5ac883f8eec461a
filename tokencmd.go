package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgrid/pushgrid/session"
)

// TokenCmd signs a token for auth.mode jwt with the node's HMAC secret:
// for tests, scripts and a first try. Production tokens come from the
// application's own login, signed with the same secret or key.
type TokenCmd struct {
	Secret   string        `env:"PUSHGRID_AUTH_SECRET" required:"" help:"The nodes' auth.secret (HS256)."`
	Sub      string        `required:"" help:"The user the token names."`
	TTL      time.Duration `name:"ttl" default:"1h" help:"How long the token is valid (exp = now + ttl); 0 for no exp."`
	Channels []string      `name:"channel" help:"A channel pattern for the channels claim, which join = \"claim\" rules check (repeatable)."`
	Issuer   string        `help:"iss, when the nodes check auth.issuer."`
	Audience string        `help:"aud, when the nodes check auth.audience."`
}

func (c *TokenCmd) Run(e *env) error {
	if len(c.Secret) < 32 {
		return errors.New("--secret: an HMAC key needs at least 32 bytes, as auth.secret does")
	}
	if !session.ClaimableUser(c.Sub) {
		return fmt.Errorf("--sub: %q is not a user name a client may have", c.Sub)
	}
	if c.TTL < 0 {
		return fmt.Errorf("--ttl: %v is negative", c.TTL)
	}
	claims := jwt.MapClaims{"sub": c.Sub, "iat": time.Now().Unix()}
	if c.TTL > 0 {
		claims["exp"] = time.Now().Add(c.TTL).Unix()
	}
	if len(c.Channels) > 0 {
		for _, p := range c.Channels {
			if _, err := session.ParsePattern(p); err != nil {
				return fmt.Errorf("--channel: %w", err)
			}
		}
		claims["channels"] = c.Channels
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if c.Audience != "" {
		claims["aud"] = c.Audience
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(c.Secret))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, token)
	return err
}
