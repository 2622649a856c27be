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
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// watchServer answers every request with handle and reports on ended each
// time a handler returns.
func watchServer(t *testing.T, handle http.HandlerFunc) (*Path, <-chan struct{}) {
	t.Helper()
	ended := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ended <- struct{}{} }()
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Path{Key: "T", Name: "test", Base: srv.URL, Client: srv.Client()}, ended
}

func TestOpenWatchesKeepsThemOpenUntilClose(t *testing.T) {
	p, ended := watchServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	w, err := OpenWatches(context.Background(), p, IdleWatchPath("default"), 3, 2, time.Minute)
	if err != nil {
		t.Fatalf("OpenWatches: %v", err)
	}
	if w.Opened != 3 {
		t.Errorf("Opened = %d, want 3", w.Opened)
	}
	w.Close()
	for range 3 {
		<-ended
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err after Close = %v, want none: the watches ended before they were closed", err)
	}
}

func TestOpenWatchesFailsWithoutResponseHeaders(t *testing.T) {
	// The server never answers: the opening phase runs out and cancels
	// every request, including one whose headers were still awaited.
	p, ended := watchServer(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	_, err := OpenWatches(context.Background(), p, IdleWatchPath("default"), 2, 2, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no response headers within 50ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenWatches = %v, want no response headers within 50ms and a deadline", err)
	}
	for range 2 {
		<-ended
	}
}

func TestOpenWatchesReportsAStatus(t *testing.T) {
	p, _ := watchServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "forbidden: no access to configmaps", http.StatusForbidden)
	})
	_, err := OpenWatches(context.Background(), p, IdleWatchPath("default"), 1, 1, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "status 403: forbidden: no access to configmaps") {
		t.Fatalf("OpenWatches = %v, want status 403 and the body", err)
	}
}
