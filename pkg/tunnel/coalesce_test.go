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

package tunnel

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/hashicorp/yamux"
)

// writes records each Write it gets.
type writes struct {
	io.ReadCloser
	got [][]byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, append([]byte(nil), p...))
	return len(p), nil
}

func header(typ byte, length uint32) []byte {
	return []byte{0, typ, 0, 0, 0, 0, 0, 3, byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length)}
}

func TestCoalesceWritesADataFrameAtOnce(t *testing.T) {
	w := &writes{}
	c := Coalesce(w)
	steps := []struct {
		write []byte
		n     int
	}{
		{header(frameTypeData, 5), frameHeaderSize},
		{[]byte("hello"), 5},
		// A window update has no body: it goes at once.
		{header(1, 262144), frameHeaderSize},
		// Nor has a data frame that only carries flags (a FIN).
		{header(frameTypeData, 0), frameHeaderSize},
	}
	for i, s := range steps {
		n, err := c.Write(s.write)
		if err != nil || n != s.n {
			t.Fatalf("write %d: %d, %v; want %d", i, n, err, s.n)
		}
	}
	want := [][]byte{append(header(frameTypeData, 5), "hello"...), header(1, 262144), header(frameTypeData, 0)}
	if len(w.got) != len(want) {
		t.Fatalf("%d writes, want %d: %q", len(w.got), len(want), w.got)
	}
	for i := range want {
		if !bytes.Equal(w.got[i], want[i]) {
			t.Errorf("write %d = %v, want %v", i, w.got[i], want[i])
		}
	}
}

// TestYamuxOverCoalescedConnections: sessions on both ends still speak
// yamux, with streams in both directions and half-closes.
func TestYamuxOverCoalescedConnections(t *testing.T) {
	a, b := net.Pipe()
	client, err := yamux.Client(Coalesce(a), MuxConfig(DefaultKeepAlive))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	server, err := yamux.Server(Coalesce(b), MuxConfig(DefaultKeepAlive))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = server.Close() }()
	go func() {
		for {
			s, err := server.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				data, _ := io.ReadAll(s)
				_, _ = s.Write(bytes.ToUpper(data))
				_ = s.Close()
			}()
		}
	}()
	payload := bytes.Repeat([]byte("tunnel "), 100000)
	for i := 0; i < 3; i++ {
		s, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = s.Write(payload); _ = s.Close() }()
		got, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(got, bytes.ToUpper(payload)) {
			t.Fatalf("stream %d: %d bytes, %v", i, len(got), err)
		}
	}
}
