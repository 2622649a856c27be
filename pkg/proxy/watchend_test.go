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
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
		name, path, query, contentType string
	}{
		// A framing switchboard cannot follow: the stream goes on.
		{"cbor watch", "/api/v1/pods", "watch=true", "application/cbor-seq"},
		// Not watches: a slow list and a followed log end when the member ends them.
		{"list", "/api/v1/pods", "", "application/json"},
		{"logs -f", "/api/v1/namespaces/ns/pods/p/log", "follow=true", "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newShutdownMember(tc.contentType, `{"a":`, `1}`)
			stop, resp := startShutdownStream(t, mem, true, tc.path+"?"+tc.query)
			if got := readN(t, resp.Body, 5); got != `{"a":` {
				t.Fatalf("first part = %q", got)
			}
			stop()
			mem.release(t)
			if got := readN(t, resp.Body, 2); got != `1}` {
				t.Errorf("after shutdown began the stream sent %q, want the member's next part", got)
			}
		})
	}
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
	f.proxier.EndWatchesAt(stopCtx)
	srv := f.newInfoFrontend(t, testCluster)
	resp, err := (&http.Client{Timeout: 3 * waitTimeout}).Get(srv.URL + proxyPath(testCluster, pathAndQuery))
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
