package history

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgrid/pushgrid/session"
)

// The store of history channels on NATS JetStream (PROTOCOL.md §6, and
// ../shared/notes/jetstream-history.md for the measurements behind it).
//
// One stream per [[channels]] rule with history > 0: its subjects are the
// rule's channels' <prefix>.chan.<pattern>, so every message published to
// such a channel, by anyone, is stored; per channel (subject) it keeps
// the rule's history messages, each for history_ttl. The stream's leader
// republishes each stored message to <prefix>.live.chan.<channel> with its
// sequence in the Nats-Sequence header: the nodes subscribe there instead
// of to <prefix>.chan.<channel>, so what members get is what was stored,
// in the stored order, with its seq.
//
// Streams do not overlap (the rules' history patterns may not, a config
// error otherwise), a channel's messages are dropped oldest first (per
// subject limits and age, never deleted one by one: DenyDelete,
// DenyPurge), so "message N is still stored" means nothing after N was
// dropped: what recovered says.

// Message is one stored message of a channel.
type Message = session.Stored

// ErrUnavailable is a store that did not answer in time: a stream whose
// leader is being elected (4 to 9 s after it died), or JetStream down.
var ErrUnavailable = session.ErrStoreUnavailable

var _ session.HistoryStore = (*Store)(nil)

// Store reads and writes history channels.
type Store struct {
	prefix string
	rules  []session.Rule
	kind   jetstream.StorageType
	log    *slog.Logger

	// nc and js are set once, by Start, before any read or write.
	nc *nats.Conn
	js jetstream.JetStream

	mu       sync.Mutex
	replicas int // guarded by mu; the streams' replicas as last set

	// stepDownRequest asks stream's leader to step down; tests lose some.
	stepDownRequest func(ctx context.Context, stream string) error
}

// New returns the store of prefix's history channels, whose rules are
// rules (all of them, in order: the first that matches a channel is its
// rule, as for the hub). It reads and writes once Start has given it a
// connection.
func New(prefix string, rules []session.Rule, cfg Config, log *slog.Logger) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	kind := jetstream.FileStorage
	if cfg.Store == StoreMemory {
		kind = jetstream.MemoryStorage
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{prefix: prefix, rules: rules, kind: kind, log: log}
	s.stepDownRequest = s.askStepDown
	return s, nil
}

// Start gives the store its connection, whose server (or cluster) has
// JetStream. Call it once, before the hub serves clients.
func (s *Store) Start(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s.nc, s.js = nc, js
	return nil
}

// Enabled reports whether any rule keeps history.
func (s *Store) Enabled() bool {
	for _, r := range s.rules {
		if r.History > 0 {
			return true
		}
	}
	return false
}

// ruleOf is channel's rule: the first that matches; nil when none keeps
// its history.
func (s *Store) ruleOf(channel string) *session.Rule {
	for i := range s.rules {
		if s.rules[i].Pattern.Match(channel) {
			if s.rules[i].History > 0 {
				return &s.rules[i]
			}
			return nil
		}
	}
	return nil
}

// Keeps reports whether channel keeps history.
func (s *Store) Keeps(channel string) bool { return s.ruleOf(channel) != nil }

// StreamName is the stream of rule r: named by a digest of the prefix and
// the pattern, which a stream name cannot hold ('.', '*', '>'); its
// description says the pattern.
func (s *Store) StreamName(r *session.Rule) string {
	sum := sha256.Sum256([]byte(s.prefix + "\x00" + r.Pattern.String()))
	return "pushgrid-history-" + hex.EncodeToString(sum[:8])
}

// streamConfig is rule r's stream with replicas.
func (s *Store) streamConfig(r *session.Rule, replicas int) jetstream.StreamConfig {
	pattern := r.Pattern.String()
	dup := min(2*time.Minute, r.HistoryTTL)
	return jetstream.StreamConfig{
		Name:              s.StreamName(r),
		Description:       "pushgrid history of channels " + pattern + " (" + s.prefix + ")",
		Subjects:          []string{s.prefix + ".chan." + pattern},
		MaxMsgsPerSubject: int64(r.History),
		MaxAge:            r.HistoryTTL,
		Storage:           s.kind,
		Replicas:          replicas,
		Duplicates:        dup,
		AllowDirect:       true,
		DenyDelete:        true,
		DenyPurge:         true,
		RePublish: &jetstream.RePublish{
			Source:      s.prefix + ".chan." + pattern,
			Destination: s.prefix + ".live.chan." + republishPattern(pattern),
		},
	}
}

// republishPattern is pattern as a republish destination: each '*' the
// token it matched ({{wildcard(n)}}); '>' stays, as it must.
func republishPattern(pattern string) string {
	tokens := strings.Split(pattern, ".")
	n := 0
	for i, t := range tokens {
		if t == "*" {
			n++
			tokens[i] = "{{wildcard(" + strconv.Itoa(n) + ")}}"
		}
	}
	return strings.Join(tokens, ".")
}

// Ensure creates every rule's stream with replicas replicas, or raises an
// existing stream's to replicas; it never lowers them (a node that starts
// sees only itself at first, and a stream of a cluster keeps its replicas
// when nodes come and go: a dead node may come back).
func (s *Store) Ensure(ctx context.Context, replicas int) error {
	var errs []error
	lowest := 0
	for i := range s.rules {
		r := &s.rules[i]
		if r.History == 0 {
			continue
		}
		cfg := s.streamConfig(r, replicas)
		st, err := s.js.Stream(ctx, cfg.Name)
		switch {
		case err == nil:
			cfg.Replicas = max(cfg.Replicas, st.CachedInfo().Config.Replicas)
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			errs = append(errs, fmt.Errorf("history stream for channels %s: %w", r.Pattern, err))
			continue
		}
		if _, err := s.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("history stream for channels %s: %w", r.Pattern, err))
			continue
		}
		if lowest == 0 || cfg.Replicas < lowest {
			lowest = cfg.Replicas
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	s.replicas = max(replicas, lowest)
	s.mu.Unlock()
	return nil
}

// StepDown hands the leadership of every history stream that server
// (this node's NATS server name) leads to another replica, and waits, until
// ctx ends, for one to have taken it: a node about to stop on purpose (an
// in-place restart) spares its streams the 4 to 9 s in which JetStream
// would otherwise notice the leader is gone and elect another, and in
// which publishing pauses. A stream with one replica has no other: it
// pauses while the node is away.
func (s *Store) StepDown(ctx context.Context, server string) error {
	if s.js == nil {
		return ErrUnavailable
	}
	var errs []error
	for i := range s.rules {
		r := &s.rules[i]
		if r.History == 0 {
			continue
		}
		name := s.StreamName(r)
		for stepped := false; ; {
			// The leader answers a stream's info; while the leadership
			// moves a request can go unanswered, and waiting out ctx for
			// it (a CI run lost 3 s so) delays the whole handover.
			st, err := retryLost(ctx, leaderAttempt/2, func(ctx context.Context) (jetstream.Stream, error) {
				return s.js.Stream(ctx, name)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("history stream %s: %w", name, err))
				break
			}
			ci := st.CachedInfo()
			if ci.Cluster == nil || ci.Cluster.Leader != server || ci.Config.Replicas < 2 {
				break
			}
			if !stepped {
				// Bounded alone too: when the request or its answer is
				// lost, the info is read again, and the step-down asked
				// again only of a server that still leads.
				actx, cancel := context.WithTimeout(ctx, leaderAttempt/2)
				err := s.stepDownRequest(actx, name)
				cancel()
				switch {
				case err == nil:
					stepped = true
				case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
					continue
				default:
					errs = append(errs, fmt.Errorf("history stream %s: step down: %w", name, err))
				}
				if !stepped {
					break
				}
			}
			select {
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("history stream %s: no other leader yet: %w", name, ctx.Err()))
			case <-time.After(50 * time.Millisecond):
				continue
			}
			break
		}
	}
	return errors.Join(errs...)
}

// askStepDown asks stream's leader to step down.
func (s *Store) askStepDown(ctx context.Context, stream string) error {
	_, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil)
	return err
}

// retryLost calls fn with a context bounded by attempt, and again after
// leaderRetry while a call's own bound ends it (its answer was lost) and
// ctx lasts. Any other error ends it at once.
func retryLost[T any](ctx context.Context, attempt time.Duration, fn func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		v, err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(leaderRetry):
		}
	}
}

// Replicas is the replica count Ensure last set, 0 before it succeeded.
func (s *Store) Replicas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicas
}

// StoredTotal is how many messages the history streams have stored since
// they were created: their last sequences, summed.
func (s *Store) StoredTotal(ctx context.Context) (uint64, error) {
	if s.js == nil {
		return 0, ErrUnavailable // not started
	}
	var total uint64
	for i := range s.rules {
		r := &s.rules[i]
		if r.History == 0 {
			continue
		}
		st, err := s.js.Stream(ctx, s.StreamName(r))
		if err != nil {
			return 0, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0, err
		}
		total += info.State.LastSeq
	}
	return total, nil
}

// Publish stores payload in channel's history and returns its seq; with
// id, a retry of the same id on the same channel within the duplicate
// window (2 minutes, or history_ttl if shorter) is stored once. It tries
// again every so often until ctx ends while the stream does not answer
// (an attempt whose leader died holding it gets no ack: the next, with
// the same id, is stored once).
func (s *Store) Publish(ctx context.Context, channel string, payload []byte, id string) (uint64, error) {
	if s.ruleOf(channel) == nil {
		return 0, fmt.Errorf("history: channel %q keeps no history", channel)
	}
	var opts []jetstream.PublishOpt
	if id != "" {
		// JetStream deduplicates across the stream, every channel of
		// the rule: an id is the backend's per channel.
		opts = append(opts, jetstream.WithMsgID(strconv.Itoa(len(channel))+":"+channel+":"+id))
	}
	msg := &nats.Msg{Subject: s.prefix + ".chan." + channel, Data: payload}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		attempt, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := s.js.PublishMsg(attempt, msg, opts...)
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if !retryable(err) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		case <-time.After(wait):
		}
	}
}

// publishAttempt bounds one attempt to store a message.
const publishAttempt = 2 * time.Second

// retryable reports whether err is a stream that did not answer (no
// leader, or none yet), not one that refused.
func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// Last is the seq of channel's newest stored message (0 when none), as
// the stream's leader has it: a replica may lag behind it. While the
// stream has no leader (an election after its leader died) it asks again
// until ctx ends.
func (s *Store) Last(ctx context.Context, channel string) (uint64, error) {
	r := s.ruleOf(channel)
	if r == nil {
		return 0, fmt.Errorf("history: channel %q keeps no history", channel)
	}
	req, _ := json.Marshal(map[string]string{"last_by_subj": s.prefix + ".chan." + channel})
	for {
		seq, err := s.last(ctx, r, channel, req)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return seq, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(leaderRetry):
		}
	}
}

// leaderRetry is how often a request a stream's leader must answer is
// sent again while it has none.
const leaderRetry = 250 * time.Millisecond

// leaderAttempt bounds one request that a stream's leader answers. A
// leader answers within milliseconds; a request can still be lost, as in
// the moment a server has just started and the leader's interest in the
// API has not reached it yet: it is sent again. (Not shorter: under load
// a slow answer would be asked for again and again, each time adding to
// the load. A direct get, whose answer is a batch of messages, waits for
// its answer instead: asking again would throw the first one away.)
const leaderAttempt = 2 * time.Second

func (s *Store) last(ctx context.Context, r *session.Rule, channel string, req []byte) (uint64, error) {
	attempt, cancel := context.WithTimeout(ctx, leaderAttempt)
	defer cancel()
	m, err := s.nc.RequestWithContext(attempt, "$JS.API.STREAM.MSG.GET."+s.StreamName(r), req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("history: last of %q: %w", channel, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == errCodeNoMessage:
		return 0, nil
	case resp.Error != nil && (resp.Error.Code == 503 || resp.Error.Code == 404):
		// No leader yet, or the stream not created yet.
		return 0, fmt.Errorf("%w: %s", ErrUnavailable, resp.Error.Description)
	case resp.Error != nil:
		return 0, fmt.Errorf("history: last of %q: %s (%d)", channel, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, fmt.Errorf("history: last of %q: an empty answer", channel)
	}
	return resp.Message.Seq, nil
}

// Has reports whether message seq is stored, in channel, as the stream's
// leader has it (a replica that is still catching up may not have it).
func (s *Store) Has(ctx context.Context, channel string, seq uint64) (bool, error) {
	r := s.ruleOf(channel)
	if r == nil || seq == 0 {
		return false, nil
	}
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	for {
		attempt, cancel := context.WithTimeout(ctx, leaderAttempt)
		m, err := s.nc.RequestWithContext(attempt, "$JS.API.STREAM.MSG.GET."+s.StreamName(r), req)
		cancel()
		if err != nil && ctx.Err() != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err != nil {
			// Lost on the way, or no leader yet: again.
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
			case <-time.After(leaderRetry):
			}
			continue
		}
		var resp struct {
			Message *struct {
				Subject string `json:"subject"`
			} `json:"message"`
			Error *struct {
				Code    int `json:"code"`
				ErrCode int `json:"err_code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return false, fmt.Errorf("history: message %d of %q: %w", seq, channel, err)
		}
		switch {
		case resp.Message != nil:
			return resp.Message.Subject == s.prefix+".chan."+channel, nil
		case resp.Error != nil && resp.Error.ErrCode == errCodeNoMessage:
			return false, nil
		}
		select { // no leader yet
		case <-ctx.Done():
			return false, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		case <-time.After(leaderRetry):
		}
	}
}

// errCodeNoMessage is JetStream's "no message found" (JSNoMessageFoundErr).
const errCodeNoMessage = 10037

// maxBatch bounds one direct get batch; Since asks again for the rest.
const maxBatch = 1000

// Since returns channel's stored messages from seq from on, oldest first,
// up to and including seq upTo (0: whatever is stored), at most limit of
// them (0: no limit). It reads in batches from any replica; a replica
// that lags ends its batch early, and the next batch asks again from
// where it ended, so with upTo from Last nothing in between is missed.
func (s *Store) Since(ctx context.Context, channel string, from, upTo uint64, limit int) ([]Message, error) {
	r := s.ruleOf(channel)
	if r == nil {
		return nil, fmt.Errorf("history: channel %q keeps no history", channel)
	}
	from = max(from, 1)
	var out []Message
	lagging := 0
	for upTo == 0 || from <= upTo {
		batch := maxBatch
		if limit > 0 {
			batch = min(batch, limit-len(out))
		}
		if batch == 0 {
			break
		}
		msgs, pending, err := s.batch(ctx, r, channel, from, batch)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if upTo != 0 && m.Seq > upTo {
				return out, nil
			}
			out = append(out, m)
			from = m.Seq + 1
		}
		switch {
		case len(msgs) > 0 && (pending > 0 || upTo != 0):
			continue
		case len(msgs) > 0 || upTo == 0:
			return out, nil
		}
		// Nothing from seq from on, though the leader's Last said upTo:
		// the replica that answered lags it. Ask again, briefly: message
		// upTo may also have just expired.
		if lagging++; lagging > maxLagRetries {
			// Still short of upTo: fine if upTo itself has expired
			// meanwhile (then so has all before it), else a gap.
			if stored, err := s.Has(ctx, channel, upTo); err == nil && !stored {
				return out, nil
			}
			return nil, fmt.Errorf("%w: the replicas lag behind seq %d of %q", ErrUnavailable, upTo, channel)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		case <-time.After(lagRetry):
		}
	}
	return out, nil
}

// Tail returns channel's last n stored messages up to seq upTo, oldest
// first. It reads about n messages, not the channel's whole history: a
// stream's sequence is shared by the channels of its rule, so it counts
// (a one-message batch answers how many of the channel's messages are
// stored from a seq on) to find, going back from upTo in doubling steps
// and then halving them, a seq from which at most 2n are stored.
func (s *Store) Tail(ctx context.Context, channel string, n int, upTo uint64) ([]Message, error) {
	r := s.ruleOf(channel)
	if r == nil {
		return nil, fmt.Errorf("history: channel %q keeps no history", channel)
	}
	if n <= 0 || upTo == 0 {
		return nil, nil
	}
	count := func(from uint64) (uint64, error) {
		msgs, pending, err := s.batch(ctx, r, channel, from, 1)
		return uint64(len(msgs)) + pending, err
	}
	// Counts run to the stream's end: those stored past upTo meanwhile
	// are counted too.
	after, err := count(upTo + 1)
	if err != nil {
		return nil, err
	}
	want := uint64(n) + after
	// lo: a seq from which cLo >= want are stored (or 1); hi: one from
	// which fewer are.
	lo, hi, cLo := uint64(0), upTo+1, uint64(0)
	for span := uint64(n); span < upTo && lo == 0; span *= 2 {
		from := upTo + 1 - span
		c, err := count(from)
		if err != nil {
			return nil, err
		}
		if c >= want {
			lo, cLo = from, c
		} else {
			hi = from
		}
	}
	if lo == 0 {
		lo = 1
		if cLo, err = count(1); err != nil {
			return nil, err
		}
	}
	for hi-lo > 1 && cLo > want+uint64(n) { // reading from lo would read over 2n
		mid := lo + (hi-lo)/2
		c, err := count(mid)
		if err != nil {
			return nil, err
		}
		if c >= want {
			lo, cLo = mid, c
		} else {
			hi = mid
		}
	}
	msgs, err := s.Since(ctx, channel, lo, upTo, 0)
	if err != nil {
		return nil, err
	}
	// Messages stored meanwhile made the counts too high: read further
	// back, in doubling steps, until there are n.
	for step := upTo + 1 - lo; len(msgs) < n && lo > 1; step *= 2 {
		from := lo - min(step, lo-1)
		older, err := s.Since(ctx, channel, from, lo-1, 0)
		if err != nil {
			return nil, err
		}
		msgs, lo = append(older, msgs...), from
	}
	return msgs[max(0, len(msgs)-n):], nil
}

// A replica behind the leader is asked again every lagRetry, at most
// maxLagRetries times: a replica just added catches up in the background.
const (
	lagRetry      = 10 * time.Millisecond
	maxLagRetries = 200
)

// batch is one direct get batch of channel's messages from seq from on,
// and how many more are stored after them.
func (s *Store) batch(ctx context.Context, r *session.Rule, channel string, from uint64, n int) ([]Message, uint64, error) {
	req, _ := json.Marshal(struct {
		Seq        uint64 `json:"seq"`
		NextBySubj string `json:"next_by_subj"`
		Batch      int    `json:"batch"`
	}{from, s.prefix + ".chan." + channel, n})
	inbox := s.nc.NewInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+s.StreamName(r), inbox, req); err != nil {
		return nil, 0, err
	}
	var out []Message
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending, nil
		case "404": // nothing from seq from on
			return out, 0, nil
		case "503":
			return nil, 0, ErrUnavailable
		default:
			return nil, 0, fmt.Errorf("history: read %q: status %s %s", channel, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("history: read %q: a message without its sequence", channel)
		}
		out = append(out, Message{Seq: seq, Data: m.Data})
	}
}
