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
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// When switchboard shuts down, it ends the watches it proxies the way
// kube-apiserver ends its own: once the server stops taking new requests,
// each watch response ends cleanly after the event in flight, so that the
// caller sees the end of a watch (client-go re-watches, kubectl get -w
// exits quietly) and not a broken stream. The member's watch is cancelled.
// Only streams whose framing is known are ended this way: JSON and
// Kubernetes protobuf. Others, and exec, attach and port-forward, which are
// raw connections, are cut when the server exits.

// endWatchesAt wraps rt so that watch responses end at the first event
// boundary after stop is done.
func endWatchesAt(stop context.Context, rt http.RoundTripper) http.RoundTripper {
	return &watchEndingRoundTripper{rt: rt, stop: stop}
}

type watchEndingRoundTripper struct {
	rt   http.RoundTripper
	stop context.Context
}

func (t *watchEndingRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		// Compressed (a watch list with sendInitialEvents, for one): the
		// framing is not visible in the bytes that pass here.
		return resp, nil
	}
	frames := watchFraming(resp.Header.Get("Content-Type"))
	if frames == nil {
		return resp, nil
	}
	resp.Body = newEndingBody(t.stop, resp.Body, frames)
	return resp, nil
}

// watchFraming returns a tracker of event boundaries for a watch stream of
// the given media type, or nil when the framing is unknown.
func watchFraming(contentType string) framing {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	switch mediaType {
	case "application/json":
		return &jsonFraming{}
	case "application/vnd.kubernetes.protobuf":
		if params["stream"] == "watch" {
			return &lengthFraming{}
		}
	}
	return nil
}

// framing follows a stream of events and says whether what has gone by
// ends with a whole event.
type framing interface {
	observe(p []byte)
	atBoundary() bool
	// firstBoundary is the length of the shortest prefix of p after which
	// the stream would be at a boundary (0 when it is at one now), or -1.
	// It does not change the framing.
	firstBoundary(p []byte) int
}

// jsonFraming follows a stream of JSON objects (compact or indented): an
// event ends where its outermost object closes.
type jsonFraming struct {
	depth    int
	inString bool
	escaped  bool
}

func (f *jsonFraming) observe(p []byte) {
	for _, c := range p {
		switch {
		case f.escaped:
			f.escaped = false
		case f.inString:
			switch c {
			case '\\':
				f.escaped = true
			case '"':
				f.inString = false
			}
		case c == '"':
			f.inString = true
		case c == '{' || c == '[':
			f.depth++
		case c == '}' || c == ']':
			f.depth--
		}
	}
}

func (f *jsonFraming) atBoundary() bool { return f.depth == 0 && !f.inString }

func (f *jsonFraming) firstBoundary(p []byte) int {
	probe := *f
	k := firstBoundary(&probe, p)
	if k < 0 {
		return k
	}
	// The newline that closes the event goes with it.
	for k < len(p) && (p[k] == '\n' || p[k] == '\r' || p[k] == ' ' || p[k] == '\t') {
		k++
	}
	return k
}

// lengthFraming follows Kubernetes' protobuf watch framing: each event is a
// 4-byte big-endian length and that many bytes.
type lengthFraming struct {
	header    [4]byte
	headerLen int    // bytes of the current header seen
	remaining uint32 // bytes of the current event still to come
}

func (f *lengthFraming) observe(p []byte) {
	for len(p) > 0 {
		if f.remaining > 0 {
			n := uint32(len(p))
			if n > f.remaining {
				n = f.remaining
			}
			f.remaining -= n
			p = p[n:]
			continue
		}
		n := copy(f.header[f.headerLen:], p)
		f.headerLen += n
		p = p[n:]
		if f.headerLen == len(f.header) {
			f.remaining = binary.BigEndian.Uint32(f.header[:])
			f.headerLen = 0
		}
	}
}

func (f *lengthFraming) atBoundary() bool { return f.headerLen == 0 && f.remaining == 0 }

func (f *lengthFraming) firstBoundary(p []byte) int {
	probe := *f
	return firstBoundary(&probe, p)
}

// firstBoundary feeds p to probe, a copy of a framing, a byte at a time
// until it is at a boundary. It runs only for the one read during which a
// watch ends, so its pace does not matter.
func firstBoundary(probe framing, p []byte) int {
	if probe.atBoundary() {
		return 0
	}
	for i := range p {
		probe.observe(p[i : i+1])
		if probe.atBoundary() {
			return i + 1
		}
	}
	return -1
}

// endingBody is a watch response body that reads as ended (io.EOF) at the
// first event boundary after stop is done. Bytes of an event that began
// after that boundary are dropped: the caller gets whole events and a clean
// end, never a part of one.
type endingBody struct {
	body io.ReadCloser
	stop context.Context
	// unregister forgets the function stop would run: no goroutine waits
	// for it, which matters for thousands of idle watches.
	unregister func() bool

	mu     sync.Mutex
	frames framing
	ended  bool // the watch has ended at a boundary; the body is closed
}

func newEndingBody(stop context.Context, body io.ReadCloser, frames framing) *endingBody {
	b := &endingBody{body: body, stop: stop, frames: frames}
	b.unregister = context.AfterFunc(stop, b.stopIdle)
	return b
}

// stopIdle runs when the server stops taking requests. A watch waiting for
// its next event would wait for ever: closing the member's stream ends the
// read, and Read then ends the watch at the boundary it is at.
func (b *endingBody) stopIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.frames.atBoundary() {
		_ = b.body.Close()
	}
}

func (b *endingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.ended || (b.stop.Err() != nil && b.frames.atBoundary()) {
		b.end()
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.mu.Unlock()

	n, err := b.body.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop.Err() != nil {
		// Shutting down: pass on what completes the event in flight, if it
		// is all there, and end the watch right after it.
		if k := b.frames.firstBoundary(p[:n]); k >= 0 {
			b.frames.observe(p[:k])
			b.end()
			if k == 0 {
				return 0, io.EOF
			}
			return k, nil
		}
	}
	b.frames.observe(p[:n])
	return n, err
}

// end closes the member's stream, which cancels its watch, and makes every
// later Read report the end. b.mu is held.
func (b *endingBody) end() {
	if !b.ended {
		b.ended = true
		_ = b.body.Close()
	}
}

func (b *endingBody) Close() error {
	b.unregister()
	return b.body.Close()
}
