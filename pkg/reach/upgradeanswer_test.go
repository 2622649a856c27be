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
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// dialBounded dials one end of a pipe for an upgrade that a guard watches,
// and returns the bounded end, the member's end and the answer.
func dialBounded(t *testing.T, timeout time.Duration) (net.Conn, net.Conn, *upgradeAnswer) {
	t.Helper()
	ours, member := net.Pipe()
	t.Cleanup(func() { _ = ours.Close(); _ = member.Close() })
	answer := &upgradeAnswer{}
	ctx := context.WithValue(context.Background(), upgradeAnswerKey{}, answer)
	d := answerDialer{timeout: timeout, dial: func(context.Context, string, string) (net.Conn, error) { return ours, nil }}
	conn, err := d.DialContext(ctx, "tcp", "member:443")
	if err != nil {
		t.Fatal(err)
	}
	return conn, member, answer
}

func TestAnswerConnBounds(t *testing.T) {
	t.Run("not for an upgrade: as dialed", func(t *testing.T) {
		ours, _ := net.Pipe()
		d := answerDialer{timeout: time.Nanosecond, dial: func(context.Context, string, string) (net.Conn, error) { return ours, nil }}
		conn, _ := d.DialContext(context.Background(), "tcp", "member:443")
		if conn != ours {
			t.Errorf("a connection dialed for no upgrade was wrapped: %T", conn)
		}
	})

	t.Run("silent member: the bound's timeout", func(t *testing.T) {
		conn, _, _ := dialBounded(t, 50*time.Millisecond)
		_, err := conn.Read(make([]byte, 1))
		if !errors.Is(err, errUpgradeAnswerTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read = %v, want the answer timeout", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%v is not a net.Error timeout", err)
		}
	})

	t.Run("silent member over a tunnel: the same timeout", func(t *testing.T) {
		// A tunnelled member is dialed as a yamux stream, whose deadline
		// error is yamux's own.
		hubEnd, agentEnd := net.Pipe()
		t.Cleanup(func() { _ = hubEnd.Close(); _ = agentEnd.Close() })
		hub, err := yamux.Client(hubEnd, nil)
		if err != nil {
			t.Fatal(err)
		}
		agent, err := yamux.Server(agentEnd, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hub.Close(); _ = agent.Close() })
		go func() { _, _ = agent.Accept() }()
		ctx := context.WithValue(context.Background(), upgradeAnswerKey{}, &upgradeAnswer{})
		d := answerDialer{timeout: 50 * time.Millisecond, dial: func(context.Context, string, string) (net.Conn, error) { return hub.OpenStream() }}
		conn, err := d.DialContext(ctx, "tcp", "member:443")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, errUpgradeAnswerTimeout) {
			t.Fatalf("read = %v, want the answer timeout", err)
		}
	})

	t.Run("too much before the answer", func(t *testing.T) {
		conn, member, _ := dialBounded(t, 0)
		go func() {
			chunk := make([]byte, 1<<20)
			for i := 0; i <= maxUpgradeAnswerBytes>>20; i++ {
				if _, err := member.Write(chunk); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 1<<20)
		var err error
		for read := 0; err == nil && read <= maxUpgradeAnswerBytes; {
			var n int
			n, err = conn.Read(buf)
			read += n
		}
		if !errors.Is(err, errUpgradeAnswerTooLarge) {
			t.Fatalf("read = %v, want %v", err, errUpgradeAnswerTooLarge)
		}
	})

	t.Run("lifted once the answer begins", func(t *testing.T) {
		conn, member, answer := dialBounded(t, 50*time.Millisecond)
		answer.begin()
		time.Sleep(100 * time.Millisecond)
		go func() { _, _ = member.Write([]byte("x")) }()
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			t.Fatalf("read after the answer began: %v", err)
		}
	})

	t.Run("a deadline set from above outlives the lifting", func(t *testing.T) {
		// The upgrade-aware handler bounds the copy of a member's refusal
		// with a deadline of its own, set before the guard hears it.
		conn, member, answer := dialBounded(t, time.Hour)
		if err := conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		answer.begin()
		// Were it gone, the read would end only when the member closes.
		time.AfterFunc(5*time.Second, func() { _ = member.Close() })
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read = %v, want the handler's own deadline", err)
		}
	})
}
