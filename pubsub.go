package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/session"
)

// PubCmd publishes one payload through any node's NATS port.
type PubCmd struct {
	Server  string `default:"nats://127.0.0.1:4222" env:"PUSHGRID_SERVER" help:"NATS URL of any node."`
	Prefix  string `default:"${default_prefix}" env:"PUSHGRID_PREFIX" help:"Subject prefix of the cluster."`
	Channel string `xor:"target" help:"Every member of this channel."`
	User    string `xor:"target" help:"Every connection of this user."`
	Conn    string `xor:"target" help:"The one connection with this id."`
	All     bool   `xor:"target" help:"Every connection."`
	Payload string `arg:"" help:"The payload, a JSON object; - reads standard input."`
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
	nc, err := nats.Connect(p.Server, nats.Name("pushgrid-pub"), nats.Timeout(3*time.Second))
	if err != nil {
		return fmt.Errorf("no server answers at %s: %w", p.Server, err)
	}
	defer nc.Close()
	if err := nc.Publish(subject, payload); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	if err := nc.FlushTimeout(3 * time.Second); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
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
	Server  string `default:"nats://127.0.0.1:4222" env:"PUSHGRID_SERVER" help:"NATS URL of any node."`
	Subject string `arg:"" help:"NATS subject, wildcards allowed (push.chan.lobby, push.events.>)."`
}

func (s *SubCmd) Run(e *env) error {
	nc, err := nats.Connect(s.Server, nats.Name("pushgrid-sub"), nats.Timeout(3*time.Second))
	if err != nil {
		return fmt.Errorf("no server answers at %s: %w", s.Server, err)
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
