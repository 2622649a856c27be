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
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// IdleWatchPath is a watch that sees no event: ConfigMaps in namespace
// with a label nobody sets (the namespace's kube-root-ca.crt would
// otherwise come as an initial ADDED event), without bookmarks.
func IdleWatchPath(namespace string) string {
	q := url.Values{
		"watch":               {"true"},
		"allowWatchBookmarks": {"false"},
		"labelSelector":       {"proxybench.switchboard.io/idle-watch=none"},
	}
	return "/api/v1/namespaces/" + namespace + "/configmaps?" + q.Encode()
}

// Watches are open watch requests whose bodies are being read, so that an
// unexpected event or end is noticed.
type Watches struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// closing is set by Close: ends after it are expected.
	closing bool
	// unexpected records the first event or end that came while idle.
	unexpected error
	// Opened counts watches whose response headers came.
	Opened int
	// HeadersIn is how long the last of them took to arrive.
	HeadersIn time.Duration
}

// OpenWatches opens n watches of memberPath on p, parallel at a time, and
// returns once every one has its response headers (status 200), or fails
// when one fails or headersTimeout passes.
func OpenWatches(ctx context.Context, p *Path, memberPath string, n, parallel int, headersTimeout time.Duration) (*Watches, error) {
	watchCtx, cancel := context.WithCancel(ctx)
	w := &Watches{cancel: cancel}
	start := time.Now()
	opening, openCancel := context.WithTimeout(watchCtx, headersTimeout)
	defer openCancel()
	g, gctx := errgroup.WithContext(opening)
	g.SetLimit(parallel)
	for i := range n {
		g.Go(func() error {
			// The request lives as long as the watch, not as the opening
			// phase: the end of that phase cancels it only until its
			// response headers are in.
			reqCtx, reqCancel := context.WithCancel(watchCtx)
			stop := context.AfterFunc(gctx, reqCancel)
			req, err := p.NewRequest(reqCtx, http.MethodGet, memberPath)
			if err != nil {
				stop()
				reqCancel()
				return err
			}
			resp, err := p.Client.Do(req)
			if !stop() {
				// The opening phase ended first and cancelled the request.
				if err == nil {
					_ = resp.Body.Close()
				}
				return fmt.Errorf("watch %d of %d: no response headers within %s (%d opened so far): %w", i+1, n, headersTimeout, w.opened(), gctx.Err())
			}
			if err != nil {
				reqCancel()
				return fmt.Errorf("watch %d: %w", i+1, err)
			}
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
				_ = resp.Body.Close()
				reqCancel()
				return fmt.Errorf("watch %d: status %d: %s", i+1, resp.StatusCode, body)
			}
			w.mu.Lock()
			w.Opened++
			w.mu.Unlock()
			w.wg.Go(func() {
				defer reqCancel()
				w.drain(resp.Body)
			})
			return nil
		})
	}
	err := g.Wait()
	w.HeadersIn = time.Since(start)
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (w *Watches) opened() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Opened
}

// drain reads a watch's body until it ends. Anything read, or an end before
// Close, is unexpected for an idle watch.
func (w *Watches) drain(body io.ReadCloser) {
	defer func() { _ = body.Close() }()
	buf := make([]byte, 512)
	n, err := body.Read(buf)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing || w.unexpected != nil {
		return
	}
	switch {
	case n > 0:
		w.unexpected = fmt.Errorf("an idle watch received data: %.200s", buf[:n])
	case err != nil:
		w.unexpected = fmt.Errorf("an idle watch ended before it was closed: %w", err)
	default:
		w.unexpected = errors.New("an idle watch read nothing and no error")
	}
}

// Err is the first unexpected event or end on an idle watch, if any.
func (w *Watches) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unexpected
}

// Close cancels every watch and waits until their bodies are closed.
func (w *Watches) Close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}
