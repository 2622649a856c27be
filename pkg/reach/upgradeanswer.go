/*
Copyright The Switchboard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package reach

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// The upgrade-aware handler dials a member for an upgrade (exec, attach,
// port-forward) itself, does the TLS handshake over the dialed connection,
// and reads the member's answer with http.ReadResponse: with no deadline
// and no limit on its size, unlike the member transport for every other
// request. A member that accepts the connection and then says nothing
// would hold an exec for ever; one that sends headers without end would
// grow switchboard's memory with them.
//
// So the connections dialed for an upgrade are bounded below TLS until the
// member's answer has begun: reads end at a deadline (the dial timeout,
// for the handshake, plus the response header timeout) and after
// maxUpgradeAnswerBytes. The guard on the caller's side (GuardUpgrade)
// hears the member's status line and headers as soon as the handler has
// read them, and lifts both bounds; the stream then runs for as long as
// the caller keeps it.

// maxUpgradeAnswerBytes is what a member may send, counted on the wire
// (TLS records included), before its answer to an upgrade has been read:
// net/http's own limit on a response's headers.
const maxUpgradeAnswerBytes = 10 << 20

// errUpgradeAnswerTimeout and errUpgradeAnswerTooLarge read as net/http's
// own errors for the same faults of a member's answer to any other
// request, so that both give the same Status.
var (
	errUpgradeAnswerTimeout  = &answerTimeout{}
	errUpgradeAnswerTooLarge = errors.New("server response headers exceeded " + strconv.Itoa(maxUpgradeAnswerBytes) + " bytes on the wire before their end")
)

type answerTimeout struct{}

func (*answerTimeout) Error() string   { return "timeout awaiting response headers to an upgrade" }
func (*answerTimeout) Timeout() bool   { return true }
func (*answerTimeout) Temporary() bool { return false }

// Unwrap lets errors.Is(err, os.ErrDeadlineExceeded) hold, as it does for
// the read that timed out.
func (*answerTimeout) Unwrap() error { return os.ErrDeadlineExceeded }

type upgradeAnswerKey struct{}

// upgradeAnswer is carried by an upgrade request's context from
// GuardUpgrade to the dial, and joins the connection dialed for it to the
// guard that hears the member's answer.
type upgradeAnswer struct {
	mu    sync.Mutex
	conn  *answerConn
	begun bool
}

// attach bounds conn until the answer has begun.
func (a *upgradeAnswer) attach(conn *answerConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.begun {
		return
	}
	a.conn = conn
	conn.bound()
}

// begin lifts the bounds: the member's answer has been read.
func (a *upgradeAnswer) begin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.begun = true
	if a.conn != nil {
		a.conn.lift()
	}
}

// answerDialer dials as dial does; a connection dialed for an upgrade that
// GuardUpgrade watches is bounded until its answer begins.
type answerDialer struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration
}

func (d answerDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	a, ok := ctx.Value(upgradeAnswerKey{}).(*upgradeAnswer)
	if !ok {
		return conn, nil
	}
	bounded := &answerConn{Conn: conn, timeout: d.timeout}
	a.attach(bounded)
	return bounded, nil
}

// answerConn is a connection whose reads are bounded, in time and size,
// between bound and lift.
type answerConn struct {
	net.Conn
	timeout time.Duration

	mu      sync.Mutex
	bounded bool
	// deadline is the one bound set, while nobody else has set another.
	deadline time.Time
	read     int64
}

func (c *answerConn) bound() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bounded = true
	if c.timeout > 0 {
		c.deadline = time.Now().Add(c.timeout)
		_ = c.Conn.SetReadDeadline(c.deadline)
	}
}

func (c *answerConn) lift() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bounded = false
	if !c.deadline.IsZero() {
		c.deadline = time.Time{}
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
}

func (c *answerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.bounded {
		return n, err
	}
	c.read += int64(n)
	switch {
	case c.read > maxUpgradeAnswerBytes:
		return n, errUpgradeAnswerTooLarge
	case err != nil && !c.deadline.IsZero() && isTimeout(err):
		return n, errUpgradeAnswerTimeout
	}
	return n, err
}

// SetDeadline and SetReadDeadline from above (the handler bounds the
// copy of a member's refusal) replace the bound's deadline, which lift
// then leaves alone.
func (c *answerConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = time.Time{}
	return c.Conn.SetDeadline(t)
}

func (c *answerConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = time.Time{}
	return c.Conn.SetReadDeadline(t)
}

// isTimeout says whether a read failed at its deadline: os.ErrDeadlineExceeded
// on a network connection, a net.Error that says so on a tunnel's yamux
// stream.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}
