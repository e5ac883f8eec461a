package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

// HookFunc sends payload as a NATS request on <prefix>.auth and returns
// the reply's payload. It must give up when ctx is done; any error (no
// responder, a timeout, a closed connection) refuses the client with 503.
type HookFunc func(ctx context.Context, payload []byte) ([]byte, error)

// Authenticator decides who a request is, in the mode of its Config.
type Authenticator struct {
	cfg  Config
	node string
	hook HookFunc
	// parser and key are set in mode jwt only.
	parser *jwt.Parser
	key    verifier
}

// New returns an Authenticator for cfg, its zero fields filled with their
// defaults. In mode jwt it reads auth.public_key_file, if set; in mode
// hook, hook asks the backend and node names this node in the request.
// Errors name the key at fault.
func New(cfg Config, node string, hook HookFunc) (*Authenticator, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	a := &Authenticator{cfg: cfg, node: node, hook: hook}
	switch cfg.Mode {
	case ModeJWT:
		if cfg.PublicKeyFile != "" {
			v, err := loadVerifier(cfg.PublicKeyFile)
			if err != nil {
				return nil, err
			}
			a.key = v
		} else {
			a.key = secretVerifier(cfg.Secret)
		}
		opts := []jwt.ParserOption{jwt.WithValidMethods(a.key.methods), jwt.WithLeeway(cfg.Leeway)}
		if cfg.Issuer != "" {
			opts = append(opts, jwt.WithIssuer(cfg.Issuer))
		}
		if cfg.Audience != "" {
			opts = append(opts, jwt.WithAudience(cfg.Audience))
		}
		a.parser = jwt.NewParser(opts...)
	case ModeHook:
		if hook == nil {
			return nil, errors.New("auth.mode: mode hook needs a NATS connection to send its requests on")
		}
	}
	return a, nil
}

// Authenticate returns who r is, or why it may not connect: an
// *gateway.HTTPError with the status and text of PROTOCOL.md §4. remote is
// the client's address (after trusted proxies), told to the hook. Mode
// none decides nothing (the gateway reads ?user= itself): it returns
// ErrModeNone.
func (a *Authenticator) Authenticate(r *http.Request, remote netip.Addr) (session.Identity, error) {
	switch a.cfg.Mode {
	case ModeJWT:
		id, why := a.verify(TokenFrom(r, a.cfg.Cookie))
		if why != "" {
			return session.Identity{}, &gateway.HTTPError{Status: http.StatusUnauthorized, Msg: "invalid token: " + why}
		}
		return id, nil
	case ModeHook:
		return a.ask(r, remote)
	}
	return session.Identity{}, ErrModeNone
}

// Refresh checks the token of a client's refresh frame by the rules of
// Authenticate. Its error's text is for the client (the session answers
// it as bad_token): in mode jwt the same text as the 401's; in the other
// modes, which have no token to replace, it wraps ErrNoRefresh and tells
// the client to reconnect.
func (a *Authenticator) Refresh(token string) (session.Identity, error) {
	if a.cfg.Mode != ModeJWT {
		return session.Identity{}, fmt.Errorf("%w in mode %s: reconnect instead", ErrNoRefresh, a.cfg.Mode)
	}
	id, why := a.verify(token)
	if why != "" {
		return session.Identity{}, errors.New("invalid token: " + why)
	}
	return id, nil
}

// Leeway is the clock skew allowed on exp and nbf: the session closes a
// connection at its Identity.Expires plus it.
func (a *Authenticator) Leeway() time.Duration { return a.cfg.Leeway }

// Mode is the auth.mode in force: ModeNone, ModeJWT or ModeHook.
func (a *Authenticator) Mode() string { return a.cfg.Mode }
