package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/session"
)

// natsClient is how pub and sub reach a node's NATS client port.
type natsClient struct {
	Server string `default:"nats://127.0.0.1:4222" env:"PUSHGRID_SERVER" help:"NATS URL of any node; it may carry the token (nats://TOKEN@host:4222)."`
	Token  string `env:"PUSHGRID_NATS_TOKEN" help:"The nodes' nats.token, when they have one."`
	TLSCA  string `name:"tls-ca" type:"existingfile" help:"PEM CA file to trust for a node's TLS client port (nodes with nats.tls_cert)."`
}

// connect connects as name. Errors name the server without the token its
// URL may hold.
func (c natsClient) connect(e *env, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(3 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A refusal answers what the command did, and the command
			// says so itself once it has flushed.
			if !errors.Is(err, nats.ErrPermissionViolation) {
				fmt.Fprintln(e.stderr, "pushgrid:", err)
			}
		})}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	nc, err := nats.Connect(c.Server, opts...)
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return nil, fmt.Errorf("the server at %s refused the connection (%w): give the nodes' nats.token with --token or PUSHGRID_NATS_TOKEN",
			withoutToken(c.Server), err)
	case err != nil:
		return nil, fmt.Errorf("no server answers at %s: %w", withoutToken(c.Server), err)
	}
	return nc, nil
}

// withoutToken is servers (a URL or a comma list of them) without the
// user information, where a token may be.
func withoutToken(servers string) string {
	list := strings.Split(servers, ",")
	for i, s := range list {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			u.User = url.User("xxxxx")
			list[i] = u.String()
		}
	}
	return strings.Join(list, ",")
}

// PubCmd publishes one payload through any node's NATS port.
type PubCmd struct {
	NATS    natsClient `embed:""`
	Prefix  string     `default:"${default_prefix}" env:"PUSHGRID_PREFIX" help:"Subject prefix of the cluster."`
	Channel string     `xor:"target" help:"Every member of this channel."`
	User    string     `xor:"target" help:"Every connection of this user."`
	Conn    string     `xor:"target" help:"The one connection with this id."`
	All     bool       `xor:"target" help:"Every connection."`
	Payload string     `arg:"" help:"The payload, a JSON object; - reads standard input."`
}

func (p *PubCmd) Run(e *env) error {
	subject, err := p.subject()
	if err != nil {
		return err
	}
	payload := []byte(p.Payload)
	if p.Payload == "-" {
		if payload, err = io.ReadAll(e.stdin); err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
	}
	nc, err := p.NATS.connect(e, "pushgrid-pub")
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.Publish(subject, payload); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	if err := nc.FlushTimeout(3 * time.Second); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	// The server answers a refused publish before the flush's PONG.
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		return fmt.Errorf("publish to %s: %w; is --prefix the nodes' nats.prefix?", subject, err)
	}
	fmt.Fprintf(e.stderr, "published %d bytes to %s\n", len(payload), subject)
	return nil
}

// subject checks the target's name and builds its subject.
func (p *PubCmd) subject() (string, error) {
	s := broker.Subjects{Prefix: p.Prefix}
	switch {
	case p.Channel != "":
		if !session.ValidChannel(p.Channel) {
			return "", fmt.Errorf("invalid channel name %q: 1 to 128 bytes of A-Z a-z 0-9 _ - : @ = and non-empty dot-separated tokens", p.Channel)
		}
		return s.Channel(p.Channel), nil
	case p.User != "":
		if !session.ValidUser(p.User) {
			return "", fmt.Errorf("invalid user name %q: 1 to 128 bytes of A-Z a-z 0-9 _ - : @ = and non-empty dot-separated tokens", p.User)
		}
		return s.User(p.User), nil
	case p.Conn != "":
		if !session.ValidToken(p.Conn) {
			return "", fmt.Errorf("invalid connection id %q", p.Conn)
		}
		return s.Conn(p.Conn), nil
	case p.All:
		return s.All(), nil
	}
	return "", errors.New("name one target: --channel, --user, --conn or --all")
}

// SubCmd prints messages on a subject.
type SubCmd struct {
	NATS    natsClient `embed:""`
	Subject string     `arg:"" help:"NATS subject, wildcards allowed (push.events.>, push.recv.order, push.node.*); a node lets backends subscribe to its recv, events, node and auth subjects and to _INBOX.>."`
}

func (s *SubCmd) Run(e *env) error {
	nc, err := s.NATS.connect(e, "pushgrid-sub")
	if err != nil {
		return err
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(s.Subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", s.Subject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(3 * time.Second); err != nil {
		return fmt.Errorf("subscribe %s: %w", s.Subject, err)
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		return fmt.Errorf("subscribe %s: %w; a node lets backends subscribe to <prefix>.recv.>, <prefix>.events.>, <prefix>.node.>, <prefix>.auth and _INBOX.> (PROTOCOL.md §2)",
			s.Subject, err)
	}
	for {
		select {
		case <-e.ctx.Done():
			return nil
		case m := <-msgs:
			printMsg(e.stdout, m)
		}
	}
}

// printMsg writes one message: the subject, its headers sorted, the payload.
func printMsg(w io.Writer, m *nats.Msg) {
	var b strings.Builder
	b.WriteString(m.Subject)
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, strings.Join(m.Header[k], ","))
	}
	b.WriteByte('\n')
	b.Write(m.Data)
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}
