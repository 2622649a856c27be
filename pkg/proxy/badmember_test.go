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
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Members that misbehave once the connection is up, each a real TLS
// server on loopback: every plain request and watch to them ends, with a
// Status that names the cluster and says what the member did.
func TestMisbehavingMembers(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	// raw answers with bytes of its own on the member's TLS connection.
	raw := func(answer func(*strings.Builder)) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer func() { _ = conn.Close() }()
			var b strings.Builder
			answer(&b)
			_, _ = conn.Write([]byte(b.String()))
		}
	}
	for _, tc := range []struct {
		name   string
		answer http.HandlerFunc
		code   int32
		reason metav1.StatusReason
		want   string
		// notForUpgrades: what the member does is right for an upgrade.
		notForUpgrades bool
		// quick: the row is about the bound on a member's silence. Other
		// rows run with a bound they cannot reach on a loaded machine (an
		// 11 MB header block takes seconds to read there), so that they
		// test what they are about.
		quick bool
	}{
		{"finishes TLS and never answers", func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		},
			http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "did not begin its answer", false, true},
		{"sends headers without end", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer func() { _ = conn.Close() }()
			if _, err := conn.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
				return
			}
			for i := 0; ; i++ {
				select {
				case <-hold:
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(conn, "X-Line-%d: more\r\n", i); err != nil {
					return
				}
			}
		},
			http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "did not begin its answer", false, true},
		{"answers garbage", raw(func(b *strings.Builder) { b.WriteString("\x00\x01 not HTTP at all\r\n\r\n") }),
			http.StatusBadGateway, "", "not valid HTTP", false, false},
		{"answers 2 MiB of NUL bytes", raw(func(b *strings.Builder) { b.WriteString(strings.Repeat("\x00", 2<<20) + "\r\n\r\n") }),
			http.StatusBadGateway, "", "not valid HTTP", false, false},
		{"sends a header block over 10 MB", raw(func(b *strings.Builder) {
			b.WriteString("HTTP/1.1 200 OK\r\n")
			for b.Len() < 11<<20 {
				b.WriteString("X-Filler: " + strings.Repeat("x", 1000) + "\r\n")
			}
		}), http.StatusBadGateway, "", "headers exceeded", false, false},
		{"answers 101 to a request that asked for no upgrade", raw(func(b *strings.Builder) {
			b.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
		}), http.StatusBadGateway, "", "switch protocol", true, false},
	} {
		for _, m := range []mode{plainMode, watchMode, upgradeMode} {
			if m == upgradeMode && tc.notForUpgrades {
				continue
			}
			t.Run(tc.name+"/"+string(m), func(t *testing.T) {
				mem := newMember(t, tc.answer, withHTTP2(false))
				bound := time.Hour
				if tc.quick {
					bound = testDialTimeout
				}
				f := newFixtureWith(t, reach.Config{DialTimeout: testDialTimeout, ResponseHeaderTimeout: bound, OnFailure: RecordUpstreamError})
				f.addMember(t, testCluster, mem, "")
				status, rec := f.failOnce(t, m)
				checkStatus(t, status, tc.code, tc.reason, testCluster, mem.srv.URL, tc.want)
				// What the member sent is not echoed back at length.
				if len(status.Message) > 1024 || rec.Body.Len() > 2048 {
					t.Errorf("a message of %d bytes in an answer of %d", len(status.Message), rec.Body.Len())
				}
				if rec.Code != int(tc.code) {
					t.Errorf("code = %d, want %d", rec.Code, tc.code)
				}
			})
		}
	}
}

// Members that rightly begin their answer later than the bound: the
// member holds these requests open, and kube-apiserver sends their headers
// only when it has something (logs -f: the kubelet's first line; a nested
// proxy: the backend's answer; a CPU profile: when it is done). The bound
// stays for what the member answers at once: an ordinary GET and a watch.
func TestMembersThatRightlyAnswerLate(t *testing.T) {
	const bound = 500 * time.Millisecond
	late := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(8 * bound):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "the first line\n")
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/v1/namespaces/dev/pods/web-0/log?follow=true&tailLines=0", http.StatusOK},
		{"/api/v1/namespaces/dev/services/web:80/proxy/slow", http.StatusOK},
		{"/api/v1/namespaces/dev/pods/web-0:8080/proxy/", http.StatusOK},
		{"/api/v1/nodes/node-0/proxy/metrics", http.StatusOK},
		{"/debug/pprof/profile?seconds=1", http.StatusOK},
		// What the member answers at once is bounded.
		{"/api/v1/namespaces/dev/pods/web-0/log", http.StatusGatewayTimeout},
		{"/api/v1/namespaces/dev/pods/web-0/exec?command=ls", http.StatusGatewayTimeout},
		{"/api/v1/namespaces/dev/pods/web-0/portforward?ports=80", http.StatusGatewayTimeout},
		{"/api/v1/namespaces/dev/pods?watch=true", http.StatusGatewayTimeout},
		{"/api/v1/namespaces/dev/pods", http.StatusGatewayTimeout},
	} {
		t.Run(tc.path, func(t *testing.T) {
			mem := newMember(t, late)
			f := newFixtureWith(t, reach.Config{DialTimeout: testDialTimeout, ResponseHeaderTimeout: bound, OnFailure: RecordUpstreamError})
			f.addMember(t, testCluster, mem, "")
			fe := f.newFrontend(t, testCluster, alice, nil)
			resp, raw := fe.do(t, http.MethodGet, proxyPath(testCluster, tc.path), nil, "")
			body := string(raw)
			if resp.StatusCode != tc.code {
				t.Fatalf("answer = %d %q, want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code == http.StatusOK && body != "the first line\n" {
				t.Errorf("body = %q", body)
			}
			if tc.code == http.StatusGatewayTimeout && !strings.Contains(body, "did not begin its answer within switchboard's --request-timeout") {
				t.Errorf("body = %q", body)
			}
		})
	}
}

// An upgrade's stream outlives the bound on the member's answer: the
// deadline that ends a silent member's exec is lifted once its 101 is
// read.
func TestUpgradeOutlivesTheAnswerBound(t *testing.T) {
	const bound = 500 * time.Millisecond
	mem := newMember(t, nil)
	f := newFixtureWith(t, reach.Config{DialTimeout: bound, ResponseHeaderTimeout: bound, OnFailure: RecordUpstreamError})
	f.addMember(t, testCluster, mem, "")
	fe := f.newFrontend(t, testCluster, alice, nil)

	resp, conn := fe.upgrade(t, proxyPath(testCluster, execPath)+"?command=ls&stdout=true", nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("answer = %d %q, want 101 (responder errors %v)", resp.StatusCode, readBody(t, resp), fe.responderErrors())
	}
	// Idle for well past dial + answer bounds, then the stream still works.
	time.Sleep(4 * bound)
	conn.expectEcho(t)
}

// A member that answers an upgrade with 101 and closes the connection
// ends the caller's stream: the caller reads the 101 and then the end,
// and the proxy returns.
func TestMemberClosesAfterTheUpgrade(t *testing.T) {
	mem := newMember(t, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"))
		_ = conn.Close()
	}, withHTTP2(false))
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	fe := f.newFrontend(t, testCluster, alice, nil)

	resp, conn := fe.upgrade(t, proxyPath(testCluster, execPath)+"?command=ls&stdout=true", nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("answer = %d %q, want 101 (responder errors %v)", resp.StatusCode, readBody(t, resp), fe.responderErrors())
	}
	// The caller's connection is closed, not held: its read ends (within
	// the frontend's deadline on the connection) with EOF.
	if n, err := conn.reader.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the member closed = %d, %v; want EOF", n, err)
	}
}

// A member that answers 2 GB to a caller that reads slowly is held back by
// the caller: switchboard copies as the caller reads, and buffers nothing
// beyond the connections' own windows.
func TestSlowReaderHoldsBackTheMember(t *testing.T) {
	const (
		size = 2 << 30
		// What the caller reads, slowly, before it stops reading.
		read = 16 << 20
		// The loopback sockets' buffers on both hops and the copies'
		// buffers, with room to spare; the member could write 2 GB.
		slack = 64 << 20
	)
	var written atomic.Int64
	memberDone := make(chan struct{})
	mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(memberDone)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 32<<10)
		for written.Load() < size {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	fe := f.newFrontend(t, testCluster, alice, nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	resp, err := fe.srv.Client().Get(fe.srv.URL + proxyPath(testCluster, "/api/v1/namespaces/dev/pods/web-0/log"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("answer = %d, want 200", resp.StatusCode)
	}
	buf := make([]byte, 256<<10)
	for got := 0; got < read; {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += n
		time.Sleep(5 * time.Millisecond)
	}
	// The caller stops reading; the member is soon stuck on a full window.
	time.Sleep(time.Second)
	runtime.GC()
	var stalled runtime.MemStats
	runtime.ReadMemStats(&stalled)
	ahead := written.Load() - read
	grown := int64(stalled.HeapInuse) - int64(before.HeapInuse)
	t.Logf("the member wrote %d MiB ahead of the caller's %d MiB; the heap grew by %d MiB", ahead>>20, read>>20, grown>>20)
	if ahead > slack {
		t.Errorf("the member wrote %d MiB ahead of what the caller read; want at most %d MiB", ahead>>20, slack>>20)
	}
	if grown > slack {
		t.Errorf("the heap grew by %d MiB while the caller did not read; want at most %d MiB", grown>>20, slack>>20)
	}

	// The caller goes away: the member's answer ends with it.
	_ = resp.Body.Close()
	within(t, "the member's answer after the caller left", func() { <-memberDone })
}

// A member that speaks HTTP/2, as kube-apiservers do, and sends a header
// block over the transport's 10 MiB limit: the same 502 as over HTTP/1.1.
func TestHTTP2MemberSendsHeadersOverTheLimit(t *testing.T) {
	mem := newMember(t, func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < 12<<10; i++ {
			w.Header().Set(fmt.Sprintf("X-Filler-%d", i), strings.Repeat("x", 1000))
		}
		w.WriteHeader(http.StatusOK)
	}, withHTTP2(true))
	for _, m := range []mode{plainMode, watchMode} {
		t.Run(string(m), func(t *testing.T) {
			// No bound it could reach: the row is about the size.
			f := newFixtureWith(t, reach.Config{DialTimeout: testDialTimeout, ResponseHeaderTimeout: time.Hour, OnFailure: RecordUpstreamError})
			f.addMember(t, testCluster, mem, "")
			status, rec := f.failOnce(t, m)
			checkStatus(t, status, http.StatusBadGateway, "", testCluster, mem.srv.URL, "not valid HTTP")
			if rec.Code != http.StatusBadGateway {
				t.Errorf("code = %d, want 502", rec.Code)
			}
		})
	}
}
