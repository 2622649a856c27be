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
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A page that one member fills alone goes out as it comes: each item is
// annotated and written while the member still sends the next, so the
// member's encoding, switchboard's work and the client's decoding overlap,
// as on a direct connection, and switchboard holds one item at a time.
// Only such a page can: once a page's first byte is out, no Warning header
// can follow, and a member that fails within the page is already named by
// its answer's status, before anything is written. The member's list
// metadata, which Kubernetes writes before the items, says whether it fills
// the page (it returns a continue token); the fleet's metadata goes after
// the items. A member that breaks off within its items breaks off the
// answer (the client sees a truncated response and lists again).

// recorder keeps what is read through it, until stop.
type recorder struct {
	r       io.Reader
	buf     bytes.Buffer
	stopped bool
}

func (rec *recorder) Read(p []byte) (int, error) {
	n, err := rec.r.Read(p)
	if !rec.stopped {
		rec.buf.Write(p[:n])
	}
	return n, err
}

// streamPage asks member name for a page of a later walk with query. If
// the member fills the page, it writes the page and says so; otherwise it
// returns the member's whole answer, for the walk to go on as with askOne.
func (r *read) streamPage(w http.ResponseWriter, name string, query url.Values, versions Versions) (bool, answer) {
	stream := r.openMember(r.req.Context(), name, query)
	if stream.err != nil {
		return false, answer{err: stream.err}
	}
	defer stream.close()
	rec := &recorder{r: io.LimitReader(stream.body, maxAnswerBytes+1)}
	decoder := json.NewDecoder(rec)
	rest := func() answer {
		// Not streamed: the whole answer, from what was read so far on.
		tail, err := readBody(stream.body, maxAnswerBytes)
		if err != nil {
			return answer{err: stream.readFailed(err)}
		}
		return answer{body: append(rec.buf.Bytes(), tail...), contentType: stream.contentType}
	}
	typeMeta, meta, ok := readListHead(decoder)
	if !ok || meta.Continue == "" {
		return false, rest()
	}
	rec.stopped = true
	rec.buf = bytes.Buffer{}
	_ = stream.stopDeadline() // the head came in time; the rest may take longer

	// A later page has no warnings: a member that fails makes it a 410.
	next := &Continue{Cluster: name, Token: meta.Continue, Versions: versions}
	contentType := stream.contentType
	if contentType == "" {
		contentType = r.media.accept
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	head, _ := json.Marshal(typeMeta)
	head = head[:len(head)-1]
	if len(head) > 1 {
		head = append(head, ',')
	}
	head = append(head, `"items":[`...)
	if _, err := w.Write(head); err != nil {
		return true, answer{}
	}
	for first := true; decoder.More(); first = false {
		var item json.RawMessage
		if err := decoder.Decode(&item); err != nil {
			r.breakOff(name, err)
		}
		annotated, err := annotate(item, name)
		if err != nil {
			r.breakOff(name, err)
		}
		if !first {
			annotated = append([]byte{','}, annotated...)
		}
		if _, err := w.Write(annotated); err != nil {
			return true, answer{}
		}
	}
	if _, err := decoder.Token(); err != nil {
		r.breakOff(name, err)
	}
	listMeta, _ := json.Marshal(metav1.ListMeta{ResourceVersion: EncodeVersions(versions), Continue: EncodeContinue(next)})
	_, _ = w.Write(append(append([]byte(`],"metadata":`), listMeta...), '}'))
	return true, answer{}
}

// breakOff ends an answer that has begun: the member's items could not
// be read to their end.
func (r *read) breakOff(name string, err error) {
	r.fail(name, fmt.Errorf("cluster %q: its list broke off: %w", name, err))
	panic(http.ErrAbortHandler)
}

// readListHead reads a list's fields up to its items: kind, apiVersion and
// metadata. ok is false unless the metadata came first and the decoder
// stands at the items' first element.
func readListHead(decoder *json.Decoder) (metav1.TypeMeta, metav1.ListMeta, bool) {
	var typeMeta metav1.TypeMeta
	var meta metav1.ListMeta
	if token, err := decoder.Token(); err != nil || token != json.Delim('{') {
		return typeMeta, meta, false
	}
	sawMeta := false
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return typeMeta, meta, false
		}
		var target any
		switch token {
		case "kind":
			target = &typeMeta.Kind
		case "apiVersion":
			target = &typeMeta.APIVersion
		case "metadata":
			target, sawMeta = &meta, true
		case "items":
			if !sawMeta {
				return typeMeta, meta, false
			}
			open, err := decoder.Token()
			return typeMeta, meta, err == nil && open == json.Delim('[')
		default:
			target = &json.RawMessage{}
		}
		if err := decoder.Decode(target); err != nil {
			return typeMeta, meta, false
		}
	}
	return typeMeta, meta, false
}
