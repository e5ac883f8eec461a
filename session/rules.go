package session

import (
	"errors"
	"fmt"
	"time"
)

// Values of Rule.Join and Rule.Chat.
const (
	JoinAny   = "any"   // any client
	JoinUser  = "user"  // a client with a user of its own, not anon-…
	JoinClaim = "claim" // a client whose token's channels claim matches
	JoinNone  = "none"  // no client: membership comes from the server API

	ChatMembers = "members" // a client that may join may chat
	ChatNobody  = "nobody"  // only backends publish
)

// Limits of a rule's numbers.
const (
	maxAnnounceLimit = 1_000_000_000
	maxHistory       = 1_000_000
	maxHistoryTTL    = 365 * 24 * time.Hour
)

// Rule says who may do what in the channels its pattern matches: one
// [[channels]] table of the configuration (PROTOCOL.md §5). The rules are
// tried in order and the first that matches a channel applies; a channel
// no rule matches gets DefaultRule's settings. Start a Rule from
// DefaultRule: its zero value refuses everything.
type Rule struct {
	Pattern Pattern `toml:"pattern"`
	// Join is who may join: JoinAny, JoinUser, JoinClaim or JoinNone.
	Join string `toml:"join"`
	// Chat is who may chat: ChatMembers or ChatNobody.
	Chat string `toml:"chat"`
	// Announce sends "joined" and "left" control frames to the members...
	Announce bool `toml:"announce"`
	// ...but not to the members on a node where the channel has more than
	// AnnounceLimit of them (0: no limit): n joins announced to everyone
	// cost n²/2 frames, so big channels stay quiet.
	AnnounceLimit int `toml:"announce_limit"`
	// Presence allows presence requests to whoever may join.
	Presence bool `toml:"presence"`
	// History is how many messages are kept per channel (0: none), and
	// HistoryTTL how long each is kept.
	History    int           `toml:"history"`
	HistoryTTL time.Duration `toml:"history_ttl"`
}

// DefaultRule is the rule of channels no configured rule matches, and the
// settings a [[channels]] table starts from; its pattern matches every
// channel.
func DefaultRule() Rule {
	return Rule{
		Pattern:       MustPattern(">"),
		Join:          JoinAny,
		Chat:          ChatMembers,
		Announce:      true,
		AnnounceLimit: 1000,
		Presence:      true,
		HistoryTTL:    time.Hour,
	}
}

// defaultRule is DefaultRule, shared by the channels no rule matches.
var defaultRule = DefaultRule()

// checkRules reports every rule setting that cannot work, naming the
// table as the configuration file does: channels[i].key, i from 0.
func checkRules(rules []Rule) error {
	var errs []error
	for i, r := range rules {
		key := func(k string) string { return fmt.Sprintf("channels[%d].%s", i, k) }
		if len(r.Pattern.tokens) == 0 {
			errs = append(errs, fmt.Errorf("%s: a pattern is required", key("pattern")))
		}
		switch r.Join {
		case JoinAny, JoinUser, JoinClaim, JoinNone:
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not any, user, claim or none", key("join"), r.Join))
		}
		switch r.Chat {
		case ChatMembers, ChatNobody:
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not members or nobody", key("chat"), r.Chat))
		}
		if r.AnnounceLimit < 0 || r.AnnounceLimit > maxAnnounceLimit {
			errs = append(errs, fmt.Errorf("%s: %d is not between 0 and %d", key("announce_limit"), r.AnnounceLimit, maxAnnounceLimit))
		}
		if r.History < 0 || r.History > maxHistory {
			errs = append(errs, fmt.Errorf("%s: %d is not between 0 and %d", key("history"), r.History, maxHistory))
		}
		if r.HistoryTTL < time.Second || r.HistoryTTL > maxHistoryTTL {
			errs = append(errs, fmt.Errorf("%s: %v is not between 1s and %v", key("history_ttl"), r.HistoryTTL, maxHistoryTTL))
		}
	}
	// A channel's history is one store: two history rules that could both
	// match a channel would make it ambiguous which one keeps it.
	for i, a := range rules {
		for j := i + 1; j < len(rules); j++ {
			b := rules[j]
			if a.History > 0 && b.History > 0 && len(a.Pattern.tokens) > 0 && len(b.Pattern.tokens) > 0 && a.Pattern.Overlaps(b.Pattern) {
				errs = append(errs, fmt.Errorf("channels[%d].pattern: %q overlaps channels[%d].pattern %q, and both keep history: a channel is stored once",
					j, b.Pattern, i, a.Pattern))
			}
		}
	}
	return errors.Join(errs...)
}

// ruleFor is the rule of channel: the first rule whose pattern matches it.
func (h *Hub) ruleFor(channel string) *Rule {
	for i := range h.cfg.Rules {
		if h.cfg.Rules[i].Pattern.Match(channel) {
			return &h.cfg.Rules[i]
		}
	}
	return &defaultRule
}

// mayJoin reports why c may not join channel under r, or nil when it may.
// The private prefix (Config.PrivatePrefix) applies on top of every rule.
func (h *Hub) mayJoin(c *Conn, channel string, r *Rule) *Error {
	user := c.User()
	if !h.privateAllows(user, channel) {
		return errorf(CodeForbidden, "channel %q is private", channel)
	}
	switch r.Join {
	case JoinAny:
		return nil
	case JoinUser:
		if c.anonymous() {
			return errorf(CodeForbidden, "channel %q is for named users only", channel)
		}
		return nil
	case JoinClaim:
		c.mu.Lock()
		ok := matchAny(c.claims, channel)
		c.mu.Unlock()
		if !ok {
			return errorf(CodeForbidden, "your token does not allow channel %q", channel)
		}
		return nil
	}
	return errorf(CodeForbidden, "clients may not join channel %q", channel)
}
