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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// redirectBlocker turns any redirect a member answers with into a 502
// Status: switchboard never follows a member's redirect or passes it on,
// because the caller's client would follow it with the caller's own
// credentials.
type redirectBlocker struct {
	cluster string
	// prefix is the endpoint's path, before the member path.
	prefix    string
	onFailure func(cluster, reason string)
	delegate  http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &redirectBlocker{}

func (b *redirectBlocker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.delegate.RoundTrip(req)
	if err != nil || !isRedirect(resp) {
		return resp, err
	}
	_ = resp.Body.Close()
	b.onFailure(b.cluster, "redirect")
	return statusResponse(req, resp, BadGateway(b.cluster, fmt.Sprintf(
		"cluster %q answered with a redirect (%d); switchboard never follows or passes on a member's redirect", b.cluster, resp.StatusCode)).ErrStatus,
		NeedsWarning(strings.TrimPrefix(req.URL.Path, b.prefix))), nil
}

// isRedirect says whether a response sends the client elsewhere. 304 Not
// Modified, the answer to a conditional GET (kubectl's cached OpenAPI), is
// not a redirect and passes through.
func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	case http.StatusNotModified:
		return false
	}
	return resp.StatusCode >= 300 && resp.StatusCode <= 399 && resp.Header.Get("Location") != ""
}

func (b *redirectBlocker) WrappedRoundTripper() http.RoundTripper { return b.delegate }

// credentialGuard turns a member's 401 into a 503 Status naming the cluster:
// the caller's credentials never reach the member, so a 401 can only mean
// the member rejected switchboard's own credential, and passing it on would
// tell the caller that theirs are wrong.
type credentialGuard struct {
	cluster string
	// prefix is the endpoint's path, before the member path.
	prefix    string
	onFailure func(cluster, reason string)
	delegate  http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &credentialGuard{}

func (g *credentialGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.delegate.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	_ = resp.Body.Close()
	g.onFailure(g.cluster, "unauthorized")
	return statusResponse(req, resp, CredentialRejected(g.cluster).ErrStatus, NeedsWarning(strings.TrimPrefix(req.URL.Path, g.prefix))), nil
}

func (g *credentialGuard) WrappedRoundTripper() http.RoundTripper { return g.delegate }

// GuardUpgrade wraps the writer of an upgrade request (exec, attach,
// port-forward) to this member. The upgrade-aware handler copies the
// member's answer to an upgrade straight to the hijacked connection, past
// the round trippers and their guards, so this is where its status line is
// read: code hears it (101, or the member's refusal), and a 401 is
// replaced with the 503 Status that AsCaller would answer. The request it
// returns, served in place of req, bounds the member's answer in time and
// size until it is heard here (upgradeanswer.go).
func (m *Member) GuardUpgrade(w http.ResponseWriter, req *http.Request, code func(int)) (http.ResponseWriter, *http.Request) {
	if code == nil {
		code = func(int) {}
	}
	answer := &upgradeAnswer{}
	req = req.WithContext(context.WithValue(req.Context(), upgradeAnswerKey{}, answer))
	return &upgradeGuard{ResponseWriter: w, member: m, req: req, code: code, answer: answer}, req
}

type upgradeGuard struct {
	http.ResponseWriter
	member *Member
	req    *http.Request
	code   func(int)
	answer *upgradeAnswer
}

func (g *upgradeGuard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(g.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &upgradeGuardConn{Conn: conn, guard: g}, rw, nil
}

func (g *upgradeGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// upgradeGuardConn passes everything written to it on, once it has read
// the status line written first; if that says 401, it writes a 503 Status
// in its place and drops the member's answer.
type upgradeGuardConn struct {
	net.Conn
	guard *upgradeGuard

	mu       sync.Mutex
	head     []byte
	decided  bool
	replaced bool
}

func (c *upgradeGuardConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.replaced:
		return len(p), nil
	case c.decided:
		return c.Conn.Write(p)
	}
	// The handler writes the member's answer here once it has read it.
	c.guard.answer.begin()
	c.head = append(c.head, p...)
	line, _, complete := bytes.Cut(c.head, []byte("\r\n"))
	if !complete && len(c.head) < 4096 {
		return len(p), nil
	}
	c.decided = true
	head := c.head
	c.head = nil
	code := statusCode(line)
	if code != http.StatusUnauthorized {
		if code != 0 {
			c.guard.code(code)
		}
		if _, err := c.Conn.Write(head); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.replaced = true
	m := c.guard.member
	m.onFailure(m.cluster, "unauthorized")
	status := CredentialRejected(m.cluster).ErrStatus
	c.guard.code(int(status.Code))
	// Upgrades (exec, attach, port-forward) are resource requests, whose
	// clients read the Status: no warning.
	resp := statusResponse(c.guard.req, &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, status, false)
	resp.Close = true
	defer resp.Body.Close()
	if err := resp.Write(c.Conn); err != nil {
		return 0, err
	}
	return len(p), nil
}

// statusCode reads the code of a status line, "HTTP/1.1 101 Switching
// Protocols"; 0 if it is none.
func statusCode(line []byte) int {
	fields := strings.Fields(string(line))
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return 0
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil || code < 100 || code > 999 {
		return 0
	}
	return code
}

// statusResponse is a response carrying a Status, in place of resp; with
// warn, its message also goes out as a Warning header (see needsWarning).
func statusResponse(req *http.Request, resp *http.Response, status metav1.Status, warn bool) *http.Response {
	status.Kind, status.APIVersion = "Status", "v1"
	body, _ := json.Marshal(status)
	header := http.Header{"Content-Type": []string{"application/json"}}
	if status.Details != nil && status.Details.RetryAfterSeconds > 0 {
		header.Set("Retry-After", fmt.Sprint(status.Details.RetryAfterSeconds))
	}
	if warn {
		if w := warningHeader(status.Message); w != "" {
			header.Set("Warning", w)
		}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status.Code, http.StatusText(int(status.Code))),
		StatusCode:    int(status.Code),
		Proto:         resp.Proto,
		ProtoMajor:    resp.ProtoMajor,
		ProtoMinor:    resp.ProtoMinor,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
