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

package bench

import (
	"net"
	"os"
	"testing"
	"time"
)

// The parsers read what Linux writes; these samples are copied from it.

func TestCountEstablished(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A1B1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
   1: 0100007F:CE24 0100007F:AF15 01 00000000:00000000 02:000006D1 00000000     0        0 2001 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:CE26 0100007F:AF15 01 00000000:00000000 02:000006D1 00000000     0        0 2002 2 0000000000000000 20 4 30 10 -1
   3: 0100007F:CE28 0100007F:AF15 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
   4: 0100007F:CE2A 0100007F:1F90 01 00000000:00000000 02:000006D1 00000000     0        0 2004 2 0000000000000000 20 4 30 10 -1
`)
	// Port 0xAF15 is 44821. Inode 2002 belongs to another process.
	got, err := countEstablished(table, 0xAF15, map[uint64]bool{2001: true, 2004: true})
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Errorf("countEstablished = %d, want 1", got)
	}
}

// The benchmark runs on Linux and reads /proc; so does this test, with two
// real connections of its own to a listener.
func TestEstablishedConnsOfThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	before, err := EstablishedConns(os.Getpid(), port)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		accepted, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer accepted.Close()
	}
	// The accepted ends have the clients' ports as remote ports: only the
	// two dialed ends count.
	got, err := EstablishedConns(os.Getpid(), port)
	if err != nil {
		t.Fatal(err)
	}
	if before != 0 || got != 2 {
		t.Errorf("EstablishedConns to port %d = %d before dialing and %d after two dials, want 0 and 2", port, before, got)
	}
}

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tswitchboard-api\nVmHWM:\t  150000 kB\nVmRSS:\t  123456 kB\nThreads:\t12\n")
	got, err := parseStatusKB(status, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(123456 * 1024); got != want {
		t.Errorf("VmRSS = %d, want %d", got, want)
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("a missing field must be an error")
	}
}

func TestParseCPUTime(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50.
	stat := []byte("4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 50 0 0 20 0 12 0 100 2000000 5000 18446744073709551615\n")
	got, err := parseCPUTime(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("CPU time = %s, want %s", got, want)
	}
}

func TestPercentile(t *testing.T) {
	var values []time.Duration
	for i := 100; i >= 1; i-- {
		values = append(values, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(values, q); got != want {
			t.Errorf("percentile(%v) = %s, want %s", q, got, want)
		}
	}
	if values[0] != 100*time.Millisecond {
		t.Error("percentile must not reorder its input")
	}
}

func TestItemsHashIgnoresTheListResourceVersion(t *testing.T) {
	a, err := ItemsHash([]byte(`{"kind":"ConfigMapList","metadata":{"resourceVersion":"10"},"items":[{"a":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ItemsHash([]byte(`{"kind":"ConfigMapList","metadata":{"resourceVersion":"99"},"items":[{"a":1}]}`))
	c, _ := ItemsHash([]byte(`{"kind":"ConfigMapList","metadata":{"resourceVersion":"99"},"items":[{"a":2}]}`))
	if a != b || a == c {
		t.Error("the hash must cover the items and only them")
	}
}

func TestLargeListValidate(t *testing.T) {
	l := LargeList{Namespace: "ns", Count: 2, Size: 4}
	good := `{"kind":"ConfigMapList","metadata":{},"items":[` +
		`{"metadata":{"name":"blob-4-0000"},"data":{"blob":"abcd"}},` +
		`{"metadata":{"name":"blob-4-0001"},"data":{"blob":"efgh"}}]}`
	if err := l.Validate([]byte(good)); err != nil {
		t.Errorf("a good answer: %v", err)
	}
	for name, body := range map[string]string{
		"short data":   `{"kind":"ConfigMapList","items":[{"metadata":{"name":"blob-4-0000"},"data":{"blob":"abc"}},{"metadata":{"name":"blob-4-0001"},"data":{"blob":"efgh"}}]}`,
		"missing item": `{"kind":"ConfigMapList","items":[{"metadata":{"name":"blob-4-0000"},"data":{"blob":"abcd"}}]}`,
		"wrong name":   `{"kind":"ConfigMapList","items":[{"metadata":{"name":"blob-4-0000"},"data":{"blob":"abcd"}},{"metadata":{"name":"other"},"data":{"blob":"efgh"}}]}`,
		"a chunk":      `{"kind":"ConfigMapList","metadata":{"continue":"x"},"items":[]}`,
		"not JSON":     `{"kind":`,
	} {
		if err := l.Validate([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if p := l.payload(1); len(p) != 4 || p != l.payload(1) || p == l.payload(0) {
		t.Errorf("payloads must be of the size, stable and distinct: %q %q", p, l.payload(0))
	}
}
