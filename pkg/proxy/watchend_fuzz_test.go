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
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
)

// FuzzWatchEnding: however a member cuts its watch stream into reads, and
// whenever switchboard stops (between two reads or during one), the caller
// reads the stream's own bytes up to the end of the event in flight, then a
// clean end: never part of an event, never a changed byte, never an event
// more, and never an error.
//
// The events are built from the fuzzer's bytes, so the test knows where
// each one ends without asking the framing: JSON events carry the bytes as
// strings (quotes, backslashes and braces in them), compact or indented;
// protobuf ones as length-prefixed frames.
func FuzzWatchEnding(f *testing.F) {
	f.Add([]byte("a\x00b}\"{\\\x00[\"]"), []byte{3, 7, 1}, uint8(1), false, uint8(0))
	f.Add([]byte("pod-1\x00pod-2"), []byte{40}, uint8(0), true, uint8(1))
	f.Add([]byte("\\\"\x00\\\\\x00"), []byte{1}, uint8(9), false, uint8(2))
	f.Add([]byte("frame\x00\x00\xff\xff"), []byte{2, 5}, uint8(3), true, uint8(3))
	f.Fuzz(func(t *testing.T, payload, cuts []byte, stopAt uint8, during bool, format uint8) {
		events := bytes.Split(payload, []byte{0})
		if len(events) > 64 {
			events = events[:64]
		}
		var stream []byte
		var frames framing
		// ends[i] are the offsets at which event i may end: where its
		// object closes, and after the newline that follows it.
		var ends [][2]int
		switch format % 4 {
		case 0, 1, 2:
			frames = &jsonFraming{}
			for _, e := range events {
				s, _ := json.Marshal(string(e))
				event := []byte(`{"type":"ADDED","object":{"data":` + string(s) + `,"list":[` + string(s) + `,{"k":[]}]}}`)
				if format%4 == 1 {
					var indented bytes.Buffer
					if err := json.Indent(&indented, event, "", "  "); err != nil {
						t.Fatal(err)
					}
					event = indented.Bytes()
				}
				stream = append(stream, event...)
				closed := len(stream)
				if format%4 == 2 {
					stream = append(stream, "\r\n"...)
				} else {
					stream = append(stream, '\n')
				}
				ends = append(ends, [2]int{closed, len(stream)})
			}
		default:
			frames = &lengthFraming{}
			for _, e := range events {
				stream = binary.BigEndian.AppendUint32(stream, uint32(len(e)))
				stream = append(stream, e...)
				ends = append(ends, [2]int{len(stream), len(stream)})
			}
		}

		stopCtx, stop := context.WithCancel(context.Background())
		defer stop()
		member := &cutStream{data: stream, cuts: cuts, stopDuring: -1, stop: stop}
		if during {
			member.stopDuring = int(stopAt)
		}
		body := newEndingBody(stopCtx, member, frames)
		defer func() { _ = body.Close() }()

		var out []byte
		buf := make([]byte, 512)
		before := -1 // the bytes read when the stop came
		for reads := 0; ; reads++ {
			if reads > 4*len(stream)+8 {
				t.Fatalf("no end after %d reads", reads)
			}
			if !during && reads == int(stopAt) {
				before = len(out)
				stop()
			}
			n, err := body.Read(buf)
			out = append(out, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the watch ended with %v, not a clean end", err)
			}
		}
		if during {
			before = member.before()
		}

		if !bytes.HasPrefix(stream, out) {
			t.Fatalf("the caller read bytes the member did not send:\n%q\nof\n%q", out, stream)
		}
		if before < 0 {
			if len(out) != len(stream) {
				t.Fatalf("with no stop, the caller read %d of %d bytes", len(out), len(stream))
			}
			return
		}
		member.mu.Lock()
		closed := member.closed
		member.mu.Unlock()
		if !closed {
			t.Fatal("the watch ended, but the member's stream was not closed (its watch goes on)")
		}
		lo, hi := wantEnd(ends, before)
		if len(out) < lo || len(out) > hi {
			t.Fatalf("stopped after %d bytes, the caller read %d, want %d to %d (events end at %v)", before, len(out), lo, hi, ends)
		}
	})
}

// wantEnd is where a watch stopped after `before` bytes may end: right
// there if that is between two events (or after the rest of the white space
// that ends the last one), else at the end of the event in flight, with or
// without the white space after it.
func wantEnd(ends [][2]int, before int) (int, int) {
	if before == 0 {
		return 0, 0
	}
	for _, event := range ends {
		if before < event[0] {
			return event[0], event[1]
		}
		if before <= event[1] {
			// Between two events: the white space left after the one
			// that ended may still go with it.
			return before, event[1]
		}
	}
	return before, before
}

// cutStream is a member's watch stream that hands data over in reads of
// the sizes cuts gives, and can stop switchboard during one of them.
type cutStream struct {
	data       []byte
	cuts       []byte
	stopDuring int // the read during which stop is called, or -1
	stop       func()

	mu      sync.Mutex
	reads   int
	offset  int
	stopped int // offset when stop was called
	closed  bool
}

func (s *cutStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	read := s.reads
	s.reads++
	if read == s.stopDuring {
		s.stopped = s.offset
		s.mu.Unlock()
		// What this read returns comes after the stop, as when shutdown
		// comes while a read waits for the member.
		s.stop()
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("read on closed body")
	}
	if s.offset == len(s.data) {
		return 0, io.EOF
	}
	size := 1
	if len(s.cuts) > 0 {
		size = int(s.cuts[read%len(s.cuts)])%97 + 1
	}
	n := copy(p[:min(size, len(p))], s.data[s.offset:])
	s.offset += n
	return n, nil
}

func (s *cutStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// before is how much of the stream had been read when stop was called
// during a read, or -1 when it was not.
func (s *cutStream) before() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads <= s.stopDuring || s.stopDuring < 0 {
		return -1
	}
	return s.stopped
}
