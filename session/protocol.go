package session

import "fmt"

// Code is an error code of PROTOCOL.md's errors table, sent to a client in an
// error frame.
type Code string

// The error codes of PROTOCOL.md §1.
const (
	CodeBadRequest      Code = "bad_request"
	CodeBadChannel      Code = "bad_channel"
	CodeForbidden       Code = "forbidden"
	CodeTooManyChannels Code = "too_many_channels"
	CodeRateLimited     Code = "rate_limited"
	CodeTooManyRequests Code = "too_many_requests"
	CodeNoHandler       Code = "no_handler"
	CodeTimeout         Code = "timeout"
	CodeBadToken        Code = "bad_token"
	CodeUnavailable     Code = "unavailable" // a history store failing over (§6)
)

// Codes lists every error code, in a fixed order (metrics use it). A new
// code is added here and above, nowhere else: the counters are sized and
// indexed from this list.
var Codes = [...]Code{CodeBadRequest, CodeBadChannel, CodeForbidden, CodeTooManyChannels, CodeRateLimited,
	CodeTooManyRequests, CodeNoHandler, CodeTimeout, CodeBadToken, CodeUnavailable}

// Error is a protocol error: the client receives it as an error frame and
// its connection stays open.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Msg) }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CloseCode is a WebSocket close status the server sends.
type CloseCode uint16

// The close codes of PROTOCOL.md §1.
const (
	CloseNormal       CloseCode = 1000
	CloseGoingAway    CloseCode = 1001
	CloseUnsupported  CloseCode = 1003 // binary frame
	ClosePolicy       CloseCode = 1008 // rate limit exceeded ten times in a row, or a frame too slow to arrive
	CloseTooBig       CloseCode = 1009 // frame larger than max_message_bytes
	CloseRestart      CloseCode = 1012 // a new process of the node took over its address: come back at once
	CloseSlowConsumer CloseCode = 4001
	CloseDisconnected CloseCode = 4002 // a backend or the admin disconnected it (§7)
	CloseTokenExpired CloseCode = 4003
)

// Disconnect is why the server closes a connection: the close code and the
// reason sent in the close frame.
type Disconnect struct {
	Code   CloseCode
	Reason string
}

func (d Disconnect) Error() string { return fmt.Sprintf("close %d: %s", d.Code, d.Reason) }

// The disconnects the server initiates.
var (
	DisconnectGoingAway    = Disconnect{CloseGoingAway, "going away"}
	DisconnectRestart      = Disconnect{CloseRestart, "service restart"}
	DisconnectBinary       = Disconnect{CloseUnsupported, "binary frames are not supported"}
	DisconnectRateLimit    = Disconnect{ClosePolicy, "rate limit exceeded"}
	DisconnectFrameTimeout = Disconnect{ClosePolicy, "frame timeout"}
	DisconnectSlowConsumer = Disconnect{CloseSlowConsumer, "slow consumer"}
	DisconnectTokenExpired = Disconnect{CloseTokenExpired, "token expired"}
	DisconnectWriteFailed  = Disconnect{CloseNormal, "write failed"}
)
