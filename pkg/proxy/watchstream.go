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
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// watchReadSize is the buffer a proxied watch reads the member's stream
// with. A watch spends nearly all its life waiting for the next event with
// this buffer held, so it is small: the stock reverse proxy's 32 KiB made up
// most of the memory of an idle watch. Larger events take several reads.
const watchReadSize = 4 << 10

// serveWatch forwards a member watch (a GET that streams events) and copies
// the events to the caller as they arrive. It does what the stock reverse
// proxy does for such a request, with a small read buffer: the request goes
// to location with the member's host, without hop-by-hop headers and with
// the caller's address in X-Forwarded-For; the answer comes back without
// hop-by-hop headers, each read flushed at once. A stream the member breaks
// off is broken off for the caller too (http.ErrAbortHandler), so that it
// cannot pass for a watch that ended.
func serveWatch(w http.ResponseWriter, req *http.Request, location *url.URL, rt http.RoundTripper, responder *errorResponder) {
	out := req.Clone(req.Context())
	out.URL = location
	out.Host = location.Host
	out.RequestURI = ""
	out.Close = false
	if req.ContentLength == 0 {
		out.Body = nil
	}
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		// As the stock proxy: no Go default User-Agent in the member's logs.
		out.Header.Set("User-Agent", "")
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if prior := out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	}

	resp, err := rt.RoundTrip(out)
	if err != nil {
		responder.Error(w, req, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()

	removeHopByHop(resp.Header)
	header := w.Header()
	for k, v := range resp.Header {
		header[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	flusher := http.NewResponseController(w)
	_ = flusher.Flush()

	buf := make([]byte, watchReadSize)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the caller went away
			}
			if ferr := flusher.Flush(); ferr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			if req.Context().Err() != nil {
				return // the caller went away, and the member's stream with it
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// hopByHop are the headers of one connection, not of the message (RFC 9110
// section 7.6.1), which a proxy must not forward.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers, and those the Connection
// header names, from h.
func removeHopByHop(h http.Header) {
	for _, value := range h.Values("Connection") {
		for _, name := range strings.Split(value, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}
