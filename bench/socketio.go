package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/socketio"
)

// socketIOURL is the Engine.IO WebSocket URL of the gateway that serves
// addr, a /ws URL: the same scheme and host, path /socket.io/.
func socketIOURL(addr string) (string, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("%q is not a ws:// or wss:// URL", addr)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = "/socket.io/", "", "EIO=4&transport=websocket", ""
	return u.String(), nil
}

// joinAck is the ack id of the subscriber's one emit with an ack, its
// join; socket.io-client numbers its first 0 too.
const joinAck = 0

// maxSocketPacket bounds a packet the subscriber reads: a payload and the
// event around it.
const maxSocketPacket = maxPayload + 1024

// sioSubscriber is a subscriber speaking Socket.IO on its WebSocket
// transport, as socket.io-client does but without waiting between
// packets: right after the upgrade it connects to the default namespace,
// with its credentials in the CONNECT's auth payload, and emits ("join",
// channel) with an ack; then it waits for the Engine.IO open packet, the
// welcome event and the ack, and answers the server's pings. After
// the join each event's payload, its one argument, is measured as a
// native frame is.
type sioSubscriber struct {
	*subscriber
	opened  chan struct{} // the open packet came
	welcome chan struct{} // the welcome event came, after CONNECT's answer
	failed  chan struct{} // the server refused: subscriber.failure says why
	fail    sync.Once
	// connected is set when the CONNECT is answered; read loop only.
	connected bool
}

// OnMessage reads one Engine.IO packet; it overrides the subscriber's.
func (s *sioSubscriber) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	b := m.Bytes()
	if s.isIn.Load() && len(b) > 0 && b[0] == byte(socketio.EngineMessage) {
		// Joined: the events are what is measured (see eventArg).
		if arg, ok := eventArg(b[1:]); ok {
			s.receive(arg)
		}
		return
	}
	p, err := socketio.DecodeEngine(b, maxSocketPacket)
	if err != nil {
		s.refuse(fmt.Errorf("engine.io packet %.40q: %w", b, err))
		return
	}
	switch p.Type {
	case socketio.EnginePing:
		// Unanswered, the server drops the socket after its ping timeout.
		_ = c.WriteString(string(socketio.EnginePong))
	case socketio.EngineOpen:
		select {
		case <-s.opened: // a second open packet changes nothing
		default:
			close(s.opened)
		}
	case socketio.EngineMessage:
		s.socketPacket(p.Data)
	case socketio.EngineClose:
		s.refuse(errors.New("the server closed the engine.io session"))
	}
}

func (s *sioSubscriber) socketPacket(data []byte) {
	p, err := socketio.DecodeSocket(data, maxSocketPacket)
	if err != nil {
		s.refuse(fmt.Errorf("socket.io packet %.40q: %w", data, err))
		return
	}
	switch p.Type {
	case socketio.SocketConnect:
		s.connected = true
	case socketio.SocketConnectError:
		s.refuse(fmt.Errorf("connect_error %s", p.Data))
	case socketio.SocketDisconnect:
		s.refuse(errors.New("the server disconnected the socket"))
	case socketio.SocketAck:
		if s.isIn.Load() || !p.HasAck || p.AckID != joinAck || len(p.Args) == 0 {
			return
		}
		if !bytes.Contains(p.Args[0], joinedType) {
			s.refuse(fmt.Errorf("join answered %s", p.Args[0]))
			return
		}
		s.isIn.Store(true)
		close(s.joined)
	case socketio.SocketEvent:
		if p.Event != "welcome" || !s.connected || len(p.Args) == 0 {
			return
		}
		select {
		case <-s.welcome: // a second welcome changes nothing
		default:
			if s.user != "" {
				s.welcomed = bytes.Contains(p.Args[0], []byte(`"user":"`+s.user+`"`))
			}
			close(s.welcome)
		}
	}
}

// eventArg is the one argument of data, an EVENT of the default namespace
// without an ack id (42["name",arg]), as the server writes it, or false
// for any other packet. It reads the envelope only: the load generator
// shares the cores with the server, and a whole decode (DecodeSocket
// checks all the JSON) would cost it several times what a native
// subscriber spends on a frame, so that the run would measure the load
// generator rather than the server.
func eventArg(data []byte) ([]byte, bool) {
	if len(data) < 4 || data[0] != byte(socketio.SocketEvent) || data[1] != '[' || data[2] != '"' || data[len(data)-1] != ']' {
		return nil, false
	}
	for i := 3; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			if i+1 >= len(data) || data[i+1] != ',' {
				return nil, false
			}
			return data[i+2 : len(data)-1], true
		}
	}
	return nil, false
}

// refuse records why the server would not have the subscriber, once.
func (s *sioSubscriber) refuse(err error) {
	s.fail.Do(func() {
		s.failure = err
		close(s.failed)
	})
}

// dialSocketIO opens subscriber i (s) on Socket.IO and joins its channel.
func (r *run) dialSocketIO(ctx context.Context, i int, s *subscriber) (*subscriber, error) {
	cfg := r.cfg
	addr, err := socketIOURL(cfg.URLs[i%len(cfg.URLs)])
	if err != nil {
		return nil, err
	}
	header := r.credentials(i, s)
	var auth []byte
	switch {
	case r.tokens != nil:
		auth, _ = json.Marshal(map[string]string{"token": r.tokens[i]})
	case s.user == "" && cfg.UserPrefix != "":
		auth, _ = json.Marshal(map[string]string{"user": cfg.userName(i)})
	}
	sio := &sioSubscriber{subscriber: s, opened: make(chan struct{}), welcome: make(chan struct{}), failed: make(chan struct{})}
	conn, _, err := gws.NewClient(sio, r.clientOption(i, addr, header))
	if err != nil {
		return nil, err
	}
	s.conn = conn
	go conn.ReadLoop()
	// CONNECT and the join go out at once, as the native subscriber's
	// join does after its upgrade: the server reads a session's packets
	// in order, after its open packet. (socket.io-client waits for the
	// open packet and for CONNECT's answer first: two round trips more
	// per connect, which cost the server a read each.)
	connect := append([]byte{byte(socketio.EngineMessage), byte(socketio.SocketConnect)}, auth...)
	name, _ := json.Marshal(channelName(s.channel))
	join := fmt.Appendf(nil, "%c%c%d[\"join\",%s]", socketio.EngineMessage, socketio.SocketEvent, joinAck, name)
	for _, m := range [][]byte{connect, join} {
		if err := conn.WriteMessage(gws.OpcodeText, m); err != nil {
			_ = conn.NetConn().Close()
			return nil, err
		}
	}
	if err := s.await(ctx, sio.opened, sio.failed, "engine.io open packet"); err != nil {
		return nil, err
	}
	if err := s.await(ctx, sio.welcome, sio.failed, "welcome event"); err != nil {
		return nil, err
	}
	if err := s.checkWelcome(); err != nil {
		return nil, err
	}
	if err := s.await(ctx, s.joined, sio.failed, "join ack"); err != nil {
		return nil, err
	}
	return s, nil
}
