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

package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pipeWriter is a ResponseWriter whose body a test reads as it is written.
type pipeWriter struct {
	header http.Header
	w      *io.PipeWriter
	code   int
}

func (p *pipeWriter) Header() http.Header         { return p.header }
func (p *pipeWriter) WriteHeader(code int)        { p.code = code }
func (p *pipeWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeWriter) Flush()                      {}

// fakeWatches are members' watch streams that a test writes events into.
type fakeWatches struct {
	mu      sync.Mutex
	writers map[string]*io.PipeWriter
	queries map[string]url.Values
}

func (f *fakeWatches) open(_ context.Context, name string, q url.Values) (*memberStream, error) {
	r, w := io.Pipe()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writers[name], f.queries[name] = w, q
	return &memberStream{cluster: name, body: r}, nil
}

func (f *fakeWatches) send(t *testing.T, name, eventType, object string) {
	t.Helper()
	f.mu.Lock()
	w := f.writers[name]
	f.mu.Unlock()
	if _, err := fmt.Fprintf(w, `{"type":%q,"object":%s}`+"\n", eventType, object); err != nil {
		t.Fatalf("sending to %s: %v", name, err)
	}
}

func pod(name, rv string) string {
	return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"resourceVersion":%q}}`, name, rv)
}

// startWatch runs a fleet watch over members a and b from rawQuery, and
// returns its events as they come.
func startWatch(t *testing.T, rawQuery string) (*fakeWatches, <-chan watchEvent, <-chan error) {
	t.Helper()
	fakes := &fakeWatches{writers: map[string]*io.PipeWriter{}, queries: map[string]url.Values{}}
	r := newTestRead(t, nil, []string{"a", "b"}, rawQuery, false)
	r.open = fakes.open
	reader, writer := io.Pipe()
	out := &pipeWriter{header: http.Header{}, w: writer}
	done := make(chan error, 1)
	go func() {
		_, err := r.watch(out)
		_ = writer.Close()
		done <- err
	}()
	events := make(chan watchEvent)
	go func() {
		defer close(events)
		decoder := json.NewDecoder(reader)
		for {
			var e watchEvent
			if err := decoder.Decode(&e); err != nil {
				return
			}
			events <- e
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fakes.mu.Lock()
		n := len(fakes.writers)
		fakes.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fleet watch did not open both members' watches")
		}
		time.Sleep(time.Millisecond)
	}
	return fakes, events, done
}

func next(t *testing.T, events <-chan watchEvent) watchEvent {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the fleet watch ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no fleet event")
	}
	return watchEvent{}
}

// objectOf reads an event's object's member and fleet resourceVersion.
func objectOf(t *testing.T, e watchEvent) (string, Versions, metav1.ObjectMeta) {
	t.Helper()
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(e.Object, &obj); err != nil {
		t.Fatal(err)
	}
	versions, err := DecodeVersions(obj.ResourceVersion)
	if err != nil {
		t.Fatalf("event %s: %v", e.Object, err)
	}
	return obj.Annotations[ClusterAnnotation], versions, obj.ObjectMeta
}

// TestWatchAcrossMembersWhereOneFails: each member is watched from its own
// resourceVersion; every event names its member and carries the fleet
// resourceVersion of all sent so far; when one member's watch breaks, the
// fleet watch ends with an ERROR that names it, and does not hang.
func TestWatchAcrossMembersWhereOneFails(t *testing.T) {
	from := EncodeVersions(Versions{"a": "10", "b": "20"})
	fakes, events, done := startWatch(t, "watch=1&allowWatchBookmarks=true&resourceVersion="+url.QueryEscape(from))
	for name, want := range map[string]string{"a": "10", "b": "20"} {
		if got := fakes.queries[name].Get("resourceVersion"); got != want {
			t.Errorf("member %s watched from %q, want %q", name, got, want)
		}
		if fakes.queries[name].Get("allowWatchBookmarks") != "true" {
			t.Errorf("member %s was not asked for bookmarks", name)
		}
	}

	fakes.send(t, "a", "ADDED", pod("a1", "11"))
	e := next(t, events)
	cluster, versions, meta := objectOf(t, e)
	if e.Type != "ADDED" || cluster != "a" || meta.Name != "a1" || !reflect.DeepEqual(versions, Versions{"a": "11", "b": "20"}) {
		t.Errorf("first event: %s %s from %q at %v", e.Type, meta.Name, cluster, versions)
	}
	fakes.send(t, "b", "MODIFIED", pod("b1", "21"))
	e = next(t, events)
	cluster, versions, _ = objectOf(t, e)
	if e.Type != "MODIFIED" || cluster != "b" || !reflect.DeepEqual(versions, Versions{"a": "11", "b": "21"}) {
		t.Errorf("second event: %s from %q at %v", e.Type, cluster, versions)
	}
	fakes.send(t, "b", "BOOKMARK", `{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"25"}}`)
	e = next(t, events)
	_, versions, _ = objectOf(t, e)
	if e.Type != "BOOKMARK" || !reflect.DeepEqual(versions, Versions{"a": "11", "b": "25"}) {
		t.Errorf("bookmark: %s at %v", e.Type, versions)
	}

	fakes.writers["b"].CloseWithError(errors.New("connection reset by peer"))
	e = next(t, events)
	var status metav1.Status
	if err := json.Unmarshal(e.Object, &status); err != nil {
		t.Fatal(err)
	}
	if e.Type != "ERROR" || status.Code != http.StatusServiceUnavailable || !strings.Contains(status.Message, `cluster "b"`) {
		t.Errorf("after b failed: %s %d %q, want an ERROR 503 that names b", e.Type, status.Code, status.Message)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the watch returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fleet watch did not end after a member failed")
	}
}

// TestWatchInitialEvents: with sendInitialEvents, the fleet's bookmark that
// ends the initial events comes once, after every member's, and holds all
// their resourceVersions.
func TestWatchInitialEvents(t *testing.T) {
	fakes, events, _ := startWatch(t, "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	end := func(rv string) string {
		return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":%q,"annotations":{%q:"true"}}}`, rv, metav1.InitialEventsAnnotationKey)
	}
	fakes.send(t, "a", "ADDED", pod("a1", "5"))
	fakes.send(t, "a", "BOOKMARK", end("6"))
	fakes.send(t, "b", "ADDED", pod("b1", "7"))
	fakes.send(t, "b", "BOOKMARK", end("8"))
	var got []string
	for len(got) < 3 {
		e := next(t, events)
		cluster, versions, meta := objectOf(t, e)
		got = append(got, fmt.Sprintf("%s %s %s %v", e.Type, cluster, meta.Name, meta.Annotations[metav1.InitialEventsAnnotationKey]))
		if e.Type == "BOOKMARK" && !reflect.DeepEqual(versions, Versions{"a": "6", "b": "8"}) {
			t.Errorf("the initial events' end is at %v, want a 6 and b 8", versions)
		}
	}
	want := []string{"ADDED a a1 ", "ADDED b b1 ", "BOOKMARK   true"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}
