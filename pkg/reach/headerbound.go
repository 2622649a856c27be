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
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// errHeaderTimeout reads as net/http's own error for a transport's
// ResponseHeaderTimeout, so that both give the same Status.
var errHeaderTimeout = &headerTimeout{}

type headerTimeout struct{}

func (*headerTimeout) Error() string   { return "timeout awaiting response headers" }
func (*headerTimeout) Timeout() bool   { return true }
func (*headerTimeout) Temporary() bool { return false }

type lateAnswerKey struct{}

// MayAnswerLate marks a request whose member may rightly take longer than
// the header bound to begin its answer, with nothing wrong: kube-apiserver
// sends the headers of logs -f with the first line the kubelet sends, of a
// nested service or pod proxy when the backend answers, and of a CPU
// profile when it is done. A watch is not one of them: kube-apiserver
// answers it at once. Neither is an upgrade, bounded as it is dialed.
func MayAnswerLate(ctx context.Context) context.Context {
	return context.WithValue(ctx, lateAnswerKey{}, true)
}

func mayAnswerLate(ctx context.Context) bool {
	late, _ := ctx.Value(lateAnswerKey{}).(bool)
	return late
}

// headerBound bounds how long a member may take, once a request is sent,
// to begin its answer, unless the request may answer late: a member that
// accepts the connection and then says nothing would otherwise hold a
// watch for ever. It is net/http's ResponseHeaderTimeout, per request.
type headerBound struct {
	timeout  time.Duration
	delegate http.RoundTripper
}

func (b *headerBound) RoundTrip(req *http.Request) (*http.Response, error) {
	if b.timeout <= 0 || mayAnswerLate(req.Context()) {
		return b.delegate.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	// As net/http's ResponseHeaderTimeout, the bound starts once the
	// request is written: the dial and the TLS handshake have
	// --member-dial-timeout, and an upload takes what it takes.
	t := &headerTimer{cancel: func() { cancel(errHeaderTimeout) }}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { t.start(b.timeout) },
	})
	resp, err := b.delegate.RoundTrip(req.WithContext(ctx))
	if !t.end() {
		// The bound passed, whatever came back meanwhile: the answer's
		// context is cancelled.
		if err == nil {
			_ = resp.Body.Close()
		}
		cancel(nil)
		return nil, errHeaderTimeout
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	// The body is read under ctx: it ends when the body is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// headerTimer is started when a request has been written, which HTTP/2 may
// report after the answer has come (or again, when net/http retries the
// request on a new connection), and ended when the answer comes.
type headerTimer struct {
	cancel func()

	mu           sync.Mutex
	timer        *time.Timer
	ended, fired bool
}

func (t *headerTimer) start(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.ended:
	case t.timer == nil:
		t.timer = time.AfterFunc(d, t.fire)
	default:
		t.timer.Reset(d)
	}
}

func (t *headerTimer) fire() {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.fired = true
	t.mu.Unlock()
	t.cancel()
}

// end stops the timer and says whether it had not fired.
func (t *headerTimer) end() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	if t.timer != nil {
		t.timer.Stop()
	}
	return !t.fired
}

func (b *headerBound) WrappedRoundTripper() http.RoundTripper { return b.delegate }

// cancelOnClose ends a context when the body read under it is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
