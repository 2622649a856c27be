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

package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestJSONFramingFindsEventEnds(t *testing.T) {
	events := []string{
		`{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a"}}}` + "\n",
		// Braces, brackets, quotes and backslashes inside strings.
		`{"type":"MODIFIED","object":{"data":{"k":"{[\"}]\\","l":"\\\\"},"list":[1,{"x":[]}]}}` + "\n",
		// Indented, as ?pretty=true writes it.
		"{\n  \"type\": \"DELETED\",\n  \"object\": {\n    \"a\": [\n      \"}\"\n    ]\n  }\n}\n",
	}
	stream := strings.Join(events, "")
	var ends []int // offsets just past each event's closing brace
	offset := 0
	for _, e := range events {
		offset += strings.LastIndexByte(e, '}') + 1
		ends = append(ends, offset)
		offset += len(e) - strings.LastIndexByte(e, '}') - 1
	}
	// Fed in pieces of every size, the framing must be at a boundary exactly
	// after each event's closing brace (and after the whitespace that
	// follows), and nowhere inside an event.
	for size := 1; size <= len(stream); size++ {
		f := &jsonFraming{}
		for start := 0; start < len(stream); start += size {
			end := min(start+size, len(stream))
			f.observe([]byte(stream[start:end]))
			want := isEventEnd(stream, ends, end)
			if got := f.atBoundary(); got != want {
				t.Fatalf("pieces of %d bytes: after byte %d (%q) atBoundary = %v, want %v", size, end, stream[max(0, end-10):end], got, want)
			}
		}
	}
}

// isEventEnd says whether offset lies between an event's end and the start
// of the next one.
func isEventEnd(stream string, ends []int, offset int) bool {
	if offset == 0 {
		return true
	}
	for _, e := range ends {
		if offset >= e && strings.TrimSpace(stream[e:offset]) == "" {
			return true
		}
	}
	return false
}

func TestLengthFramingFindsEventEnds(t *testing.T) {
	var stream []byte
	var ends []int
	for _, n := range []int{0, 1, 5, 300, 70000} {
		stream = binary.BigEndian.AppendUint32(stream, uint32(n))
		stream = append(stream, make([]byte, n)...)
		ends = append(ends, len(stream))
	}
	for _, size := range []int{1, 2, 3, 4, 5, 7, 299, 4096, len(stream)} {
		f := &lengthFraming{}
		for start := 0; start < len(stream); start += size {
			end := min(start+size, len(stream))
			f.observe(stream[start:end])
			want := false
			for _, e := range ends {
				want = want || e == end
			}
			if got := f.atBoundary(); got != want {
				t.Fatalf("pieces of %d bytes: after byte %d atBoundary = %v, want %v", size, end, got, want)
			}
		}
	}
}

func TestWatchFramingByMediaType(t *testing.T) {
	for contentType, known := range map[string]bool{
		"application/json":                                 true,
		"application/json;charset=utf-8":                   true,
		"application/vnd.kubernetes.protobuf;stream=watch": true,
		"application/vnd.kubernetes.protobuf":              false,
		"application/cbor-seq":                             false,
		"application/yaml":                                 false,
		"text/plain":                                       false,
		"":                                                 false,
		"application/json; charset=utf-8; invalid=\"open": false,
	} {
		if got := watchFraming(contentType) != nil; got != known {
			t.Errorf("watchFraming(%q) known = %v, want %v", contentType, got, known)
		}
	}
}

// shutdownMember answers a watch (or any request) with the parts it is
// given, one at a time as the test releases them, and records when the
// proxy cancels its request.
type shutdownMember struct {
	contentType string
	header      http.Header // more headers of the answer
	parts       []string
	next        chan struct{} // one receive per part after the first
	cancelled   chan struct{}
	once        sync.Once
}

func newShutdownMember(contentType string, parts ...string) *shutdownMember {
	return &shutdownMember{contentType: contentType, parts: parts, next: make(chan struct{}), cancelled: make(chan struct{})}
}

func (m *shutdownMember) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", m.contentType)
	for k, v := range m.header {
		w.Header()[k] = v
	}
	for i, part := range m.parts {
		if i > 0 {
			select {
			case <-m.next:
			case <-r.Context().Done():
				m.once.Do(func() { close(m.cancelled) })
				return
			}
		}
		_, _ = io.WriteString(w, part)
		_ = http.NewResponseController(w).Flush()
	}
	<-r.Context().Done()
	m.once.Do(func() { close(m.cancelled) })
}

// release lets the member write its next part.
func (m *shutdownMember) release(t *testing.T) {
	t.Helper()
	select {
	case m.next <- struct{}{}:
	case <-time.After(waitTimeout):
		t.Fatal("the member did not take its next part")
	}
}

// readN reads exactly n bytes of body.
func readN(t *testing.T, body io.Reader, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, buf)
	}
	return string(buf)
}

// readRest reads body to its end, failing the test when it does not end
// cleanly or does not end at all.
func readRest(t *testing.T, body io.Reader) string {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(body)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("the watch did not end cleanly: %v (after %q)", r.err, r.data)
		}
		return string(r.data)
	case <-time.After(waitTimeout):
		t.Fatal("the watch did not end after the server began to shut down")
		return ""
	}
}

func TestWatchesEndCleanlyAtShutdown(t *testing.T) {
	const (
		json1 = `{"type":"ADDED","object":{"metadata":{"name":"a"}}}` + "\n"
		json2 = `{"type":"MODIFIED","object":{"metadata":{"name":"a","labels":{"x":"}"}}}}` + "\n"
	)
	frame := func(payload string) string {
		return string(binary.BigEndian.AppendUint32(nil, uint32(len(payload)))) + payload
	}
	proto1, proto2 := frame("k8s\x00first event"), frame("k8s\x00second, longer event")

	for _, tc := range []struct {
		name, contentType string
		first             string
		// second is written in two parts: shutdown begins between them.
		secondA, secondB string
	}{
		{"json", "application/json", json1, json2[:20], json2[20:]},
		{"protobuf", "application/vnd.kubernetes.protobuf;stream=watch", proto1, proto2[:2], proto2[2:]},
		{"protobuf, shutdown after the length", "application/vnd.kubernetes.protobuf;stream=watch", proto1, proto2[:4], proto2[4:]},
	} {
		for _, h2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/http2=%v/idle", tc.name, h2), func(t *testing.T) {
				// The watch waits for its next event when shutdown begins.
				mem := newShutdownMember(tc.contentType, tc.first, tc.secondA+tc.secondB)
				stop, resp := startShutdownWatch(t, mem, h2)
				if got := readN(t, resp.Body, len(tc.first)); got != tc.first {
					t.Fatalf("first event = %q", got)
				}
				stop()
				if rest := readRest(t, resp.Body); rest != "" {
					t.Errorf("after shutdown the watch sent %q, want nothing more", rest)
				}
				waitCancelled(t, mem)
			})
			t.Run(fmt.Sprintf("%s/http2=%v/mid-event", tc.name, h2), func(t *testing.T) {
				// Part of an event has gone out when shutdown begins: the
				// rest follows, then the watch ends.
				mem := newShutdownMember(tc.contentType, tc.first+tc.secondA, tc.secondB, "never sent")
				stop, resp := startShutdownWatch(t, mem, h2)
				if got := readN(t, resp.Body, len(tc.first)+len(tc.secondA)); got != tc.first+tc.secondA {
					t.Fatalf("first event and a half = %q", got)
				}
				stop()
				mem.release(t)
				if rest := readRest(t, resp.Body); rest != tc.secondB {
					t.Errorf("after shutdown the watch sent %q, want the rest of the event in flight %q", rest, tc.secondB)
				}
				waitCancelled(t, mem)
			})
		}
	}
}

func TestShutdownLeavesOtherStreamsAlone(t *testing.T) {
	for _, tc := range []struct {
		name, pathAndQuery, contentType string
		header                          http.Header
	}{
		// Framings switchboard cannot follow: the stream goes on.
		{name: "cbor watch", pathAndQuery: "/api/v1/pods?watch=true", contentType: "application/cbor-seq"},
		{name: "gzipped json watch", pathAndQuery: "/api/v1/pods?watch=true&sendInitialEvents=true", contentType: "application/json",
			header: http.Header{"Content-Encoding": {"gzip"}}},
		// Not watches: a slow list and a followed log end when the member ends them.
		{name: "list", pathAndQuery: "/api/v1/pods", contentType: "application/json"},
		{name: "logs -f", pathAndQuery: "/api/v1/namespaces/ns/pods/p/log?follow=true", contentType: "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each part is a whole JSON object: were the stream ended at
			// shutdown, it would end after the first.
			mem := newShutdownMember(tc.contentType, `{"a":1}`, `{"b":2}`)
			mem.header = tc.header
			stop, resp := startShutdownStream(t, mem, true, tc.pathAndQuery)
			if got := readN(t, resp.Body, 7); got != `{"a":1}` {
				t.Fatalf("first part = %q", got)
			}
			stop()
			mem.release(t)
			if got := readN(t, resp.Body, 7); got != `{"b":2}` {
				t.Errorf("after shutdown began the stream sent %q, want the member's next part", got)
			}
		})
	}
}

func TestNoNewWatchesAfterShutdown(t *testing.T) {
	mem := newShutdownMember("application/json", `{"a":1}`)
	f := newFixture(t)
	m := newMember(t, mem.serve, withHTTP2(true))
	f.addMember(t, testCluster, m, "")
	stopCtx, stop := context.WithCancel(context.Background())
	f.proxier.endWatches = stopCtx
	stop()
	fe := f.newFrontend(t, testCluster, alice, nil)

	resp, body := fe.do(t, http.MethodGet, proxyPath(testCluster, "/api/v1/pods")+"?watch=true", nil, "")

	status := decodeStatus(t, resp.Header.Get("Content-Type"), body)
	checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, "shutting down")
	if resp.StatusCode != http.StatusServiceUnavailable || status.Details == nil || status.Details.RetryAfterSeconds == 0 {
		t.Errorf("a watch after shutdown began: %d, details %+v; want 503 with a retry-after", resp.StatusCode, status.Details)
	}
	if n := len(m.requests()); n != 0 {
		t.Errorf("the member received %d requests", n)
	}
	// Other requests are the generic server's to refuse.
	m.setAnswer(answerDefault)
	resp, body = fe.do(t, http.MethodGet, proxyPath(testCluster, "/api/v1/pods"), nil, "")
	if resp.StatusCode != http.StatusOK || string(body) != memberHello {
		t.Errorf("a list after shutdown began: %d %q, want the member's 200", resp.StatusCode, body)
	}
}

// scriptedBody is a member's body whose reads the test drives: each Read
// waits for a chunk. Closing it delivers onClose first, as a transport hands
// over data it had buffered before it reports the close.
type scriptedBody struct {
	mu      sync.Mutex
	cond    *sync.Cond
	chunks  [][]byte
	closed  bool
	onClose []byte
}

func newScriptedBody() *scriptedBody {
	b := &scriptedBody{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *scriptedBody) push(chunk string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chunks = append(b.chunks, []byte(chunk))
	b.cond.Broadcast()
}

func (b *scriptedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.chunks) == 0 && !b.closed {
		b.cond.Wait()
	}
	if len(b.chunks) > 0 {
		n := copy(p, b.chunks[0])
		b.chunks[0] = b.chunks[0][n:]
		if len(b.chunks[0]) == 0 {
			b.chunks = b.chunks[1:]
		}
		return n, nil
	}
	return 0, errors.New("http2: response body closed")
}

func (b *scriptedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		if b.onClose != nil {
			b.chunks = append(b.chunks, b.onClose)
		}
		b.cond.Broadcast()
	}
	return nil
}

// readResult reads body once in the background.
func readOnce(body io.Reader) <-chan string {
	done := make(chan string, 1)
	go func() {
		buf := make([]byte, 1024)
		n, err := body.Read(buf)
		done <- fmt.Sprintf("%q %v", buf[:n], err)
	}()
	return done
}

func expectRead(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case g := <-got:
		if g != want {
			t.Errorf("read %s, want %s", g, want)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the read did not return; want %s", want)
	}
}

// Shutdown can begin while a read is under way: what that read brings back
// may be the start of the next event, or the rest of the current one and
// the start of the next. The caller gets whole events and then the end.
func TestWatchEndingDuringARead(t *testing.T) {
	const (
		event1 = `{"type":"ADDED","object":{"n":1}}` + "\n"
		event2 = `{"type":"MODIFIED","object":{"n":2}}` + "\n"
	)
	t.Run("at a boundary, the next event starting", func(t *testing.T) {
		member := newScriptedBody()
		stopCtx, stop := context.WithCancel(context.Background())
		body := newEndingBody(stopCtx, member, &jsonFraming{})
		member.push(event1)
		expectRead(t, readOnce(body), fmt.Sprintf("%q <nil>", event1))

		// The read waits for the next event; shutdown closes the member's
		// stream, whose transport still hands over the start of one.
		member.onClose = []byte(event2[:10])
		pending := readOnce(body)
		stop()
		expectRead(t, pending, `"" EOF`)
		expectRead(t, readOnce(body), `"" EOF`)
	})
	t.Run("mid-event, the rest and the next event in one read", func(t *testing.T) {
		member := newScriptedBody()
		stopCtx, stop := context.WithCancel(context.Background())
		body := newEndingBody(stopCtx, member, &jsonFraming{})
		member.push(event1[:12])
		expectRead(t, readOnce(body), fmt.Sprintf("%q <nil>", event1[:12]))

		stop()
		member.push(event1[12:] + event2)
		expectRead(t, readOnce(body), fmt.Sprintf("%q <nil>", event1[12:]))
		expectRead(t, readOnce(body), `"" EOF`)
		member.mu.Lock()
		closed := member.closed
		member.mu.Unlock()
		if !closed {
			t.Error("the member's stream was not closed when the watch ended")
		}
	})
}

// startShutdownWatch proxies a watch to mem through a Proxier whose
// watches end when the returned function is called.
func startShutdownWatch(t *testing.T, mem *shutdownMember, h2 bool) (context.CancelFunc, *http.Response) {
	t.Helper()
	return startShutdownStream(t, mem, h2, "/api/v1/namespaces/ns/pods?watch=1")
}

// startShutdownStream proxies a GET of pathAndQuery to mem through a
// Proxier whose watches end when the returned function is called.
func startShutdownStream(t *testing.T, mem *shutdownMember, h2 bool, pathAndQuery string) (context.CancelFunc, *http.Response) {
	t.Helper()
	f := newFixture(t)
	m := newMember(t, mem.serve, withHTTP2(h2))
	f.addMember(t, testCluster, m, "")
	stopCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	f.proxier.endWatches = stopCtx
	srv := f.newInfoFrontend(t, testCluster)
	// Bodies as they are: no transparent gunzip.
	client := &http.Client{Timeout: 3 * waitTimeout, Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Get(srv.URL + proxyPath(testCluster, pathAndQuery))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return stop, resp
}

func waitCancelled(t *testing.T, mem *shutdownMember) {
	t.Helper()
	select {
	case <-mem.cancelled:
	case <-time.After(waitTimeout):
		t.Error("the member's watch was not cancelled")
	}
}
