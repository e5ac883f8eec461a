package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgrid/pushgrid/session"
)

// claims are a token's claims that pushgrid reads.
type claims struct {
	jwt.RegisteredClaims
	// Channels is kept raw, and parsed after the signature is checked, so
	// that a bad channels claim is told as such rather than as a
	// malformed token.
	Channels json.RawMessage `json:"channels"`
}

// verify checks token and returns the identity it names, or why it is
// not valid: a short text for the client that never quotes the token.
func (a *Authenticator) verify(token string) (session.Identity, string) {
	if token == "" {
		return session.Identity{}, "no token"
	}
	var c claims
	tok, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.key.key, nil })
	if err != nil {
		return session.Identity{}, a.why(err, tok, &c)
	}
	switch {
	case c.Subject == "":
		return session.Identity{}, "sub is missing"
	case !session.ClaimableUser(c.Subject):
		return session.Identity{}, "sub is not a valid user name"
	}
	channels, err := parseChannels(c.Channels)
	if err != nil {
		return session.Identity{}, "channels claim is not an array of channel patterns"
	}
	id := session.Identity{User: c.Subject, Verified: true, Channels: channels}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, ""
}

// why tells what jwt's err means for a client. The algorithm is checked
// first among the verification errors because jwt reports a refused one as
// a bad signature; the name it gives is one jwt knows, never the token's
// own text.
func (a *Authenticator) why(err error, tok *jwt.Token, c *claims) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token is malformed"
	case tok != nil && tok.Method != nil && !slices.Contains(a.key.methods, tok.Method.Alg()):
		return fmt.Sprintf("algorithm %s is not allowed", tok.Method.Alg())
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "algorithm is missing or unknown"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature is invalid"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token is expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// Only iss and aud are required, and only when configured.
		if a.cfg.Issuer != "" && c.Issuer == "" {
			return "iss is missing"
		}
		return "aud is missing"
	}
	return "token is invalid"
}

// parseChannels parses a channels claim (of a token or a hook reply): an
// array of channel patterns. Absent or null means none.
func parseChannels(raw json.RawMessage) ([]session.Pattern, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, errors.New("channels is not an array of strings")
	}
	if len(names) == 0 {
		return nil, nil
	}
	ps := make([]session.Pattern, len(names))
	for i, n := range names {
		p, err := session.ParsePattern(n)
		if err != nil {
			// Not ParsePattern's text: it quotes the whole string, and a
			// reply's may be megabytes long.
			return nil, fmt.Errorf("channels: %.64q is not a channel pattern", n)
		}
		ps[i] = p
	}
	return ps, nil
}
