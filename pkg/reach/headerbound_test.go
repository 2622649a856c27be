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
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// member answers as a transport would: before is the time to dial and
// write the request, after the time from then to the answer's headers.
func member(before, after time.Duration) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		wait := func(d time.Duration) error {
			select {
			case <-time.After(d):
				return nil
			case <-req.Context().Done():
				return context.Cause(req.Context())
			}
		}
		if err := wait(before); err != nil {
			return nil, err
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.WroteRequest != nil {
			trace.WroteRequest(httptrace.WroteRequestInfo{})
		}
		if err := wait(after); err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func TestHeaderBound(t *testing.T) {
	const bound = 200 * time.Millisecond
	get := func(ctx context.Context, rt http.RoundTripper) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://member/api", nil)
		resp, err := (&headerBound{timeout: bound, delegate: rt}).RoundTrip(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := get(context.Background(), member(3*bound, bound/4)); err != nil {
		t.Errorf("a slow dial and upload, then a quick answer: %v; the bound starts once the request is written", err)
	}
	if err := get(context.Background(), member(0, 3*bound)); !errors.Is(err, errHeaderTimeout) {
		t.Errorf("an answer later than the bound: %v, want %v", err, errHeaderTimeout)
	}
	if err := get(MayAnswerLate(context.Background()), member(0, 3*bound)); err != nil {
		t.Errorf("an answer later than the bound to a request that may answer late: %v", err)
	}
	// HTTP/2 may report the request written after the answer came.
	late := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		trace := httptrace.ContextClientTrace(req.Context())
		time.AfterFunc(bound/4, func() { trace.WroteRequest(httptrace.WroteRequestInfo{}) })
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(readAfter(req.Context(), 3*bound))}, nil
	})
	if err := get(context.Background(), late); err != nil {
		t.Errorf("the request reported written after its answer came, then a body slower than the bound: %v", err)
	}
}

// readAfter is a body that gives "ok" after d, unless ctx ends first.
func readAfter(ctx context.Context, d time.Duration) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		select {
		case <-time.After(d):
			return copy(p, "ok"), io.EOF
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
