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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"

	"github.com/go-json-experiment/json/jsontext"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/warning"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// A JSON list goes out as the members send it. Before the first byte,
// switchboard reads the head of each member's answer that the list holds:
// its kind, apiVersion and metadata, which Kubernetes writes before the
// items. By then every member has answered or failed, so the Warning
// headers that name the failed ones can still be sent, and the fleet's
// resourceVersion and continue token are known; they go after the items,
// where JSON decoders take them as well. The items then stream: each is
// annotated and written while the member still sends the next, so the
// members' encoding, switchboard's work and the client's decoding overlap,
// as on a direct connection. Switchboard holds, of each member, the first
// wholeBytes of its items, read with the head so that a small member that
// fails still fails alone, and then the few items in flight. In a page,
// the members that end within it are read whole first (at most a page),
// and the one that fills it streams last. A member that breaks off within
// its items, or stalls for the member timeout, after the answer has begun,
// breaks off the answer: the client sees a truncated response and lists
// again. Tables are merged whole: their columns must be known before their
// rows, and so are lists whose items come before their metadata (custom
// resources' lists, whose keys the API server writes sorted).

// memberPart is one member's share of a JSON list answer: the head of its
// answer, and its items, read whole or still to stream.
type memberPart struct {
	name     string
	typeMeta metav1.TypeMeta
	meta     metav1.ListMeta
	// items are the member's items, annotated, once read whole; until
	// then, decoder stands at the items' next element.
	items   []json.RawMessage
	decoder *jsontext.Decoder
	bound   *boundedReader
	body    memberBody
	err     error
	closed  bool
	// held: the rest of the answer streams, at the client's pace.
	held bool
}

// openList asks member name for a list and reads the head of its answer.
// The member deadline still runs: the caller reads the items whole within
// it, or holds the part to stream it.
func (r *read) openList(ctx context.Context, name string, query url.Values, headRead func(metav1.ListMeta)) *memberPart {
	p := &memberPart{name: name}
	p.body = r.openMember(ctx, name, query)
	if p.err = p.body.err; p.err != nil {
		p.closed = true
		return p
	}
	p.bound = &boundedReader{r: p.body.body, left: maxAnswerBytes + 1}
	rec := &recorder{r: p.bound}
	// Strict: a name given twice, in the head, an item or after the items,
	// is an error, as annotate says.
	decoder := jsontext.NewDecoder(rec)
	var ok bool
	p.typeMeta, p.meta, ok = readListHead(decoder)
	if ok {
		rec.stopped, rec.buf = true, bytes.Buffer{}
		p.decoder = decoder
		if headRead != nil {
			headRead(p.meta)
		}
		p.err = p.readUpTo(wholeBytes)
		return p
	}
	// Not a list whose metadata comes before its items: read it whole.
	defer p.close()
	tail, err := io.ReadAll(p.bound)
	if err != nil {
		p.err = p.readError(err)
		return p
	}
	whole := append(rec.buf.Bytes(), tail...)
	var list memberList
	if err := json.Unmarshal(whole, &list); err != nil {
		p.err = unreadable(name, "a list", err)
		return p
	}
	if !jsontext.Value(whole).IsValid() {
		p.err = unreadable(name, "a list", errGivenTwice)
		return p
	}
	p.typeMeta, p.meta = list.TypeMeta, list.Metadata
	if headRead != nil {
		headRead(p.meta)
	}
	p.items = make([]json.RawMessage, 0, len(list.Items))
	for _, item := range list.Items {
		annotated, err := annotateValid(item, name)
		if err != nil {
			p.err = unreadable(name, "a list", err)
			return p
		}
		p.items = append(p.items, annotated)
	}
	return p
}

// wholeBytes is how much of a member's items switchboard reads at once,
// within the member deadline, with the head of the answer: a member whose
// items end within it is read whole, so that if it fails, it fails alone,
// with a Warning, rather than breaking off the fleet's answer.
const wholeBytes = 64 << 10

// hold lets the rest of the part's answer go at the pace of the fleet's
// answer, which is the pace of the client that reads it; each read still
// waits at most the member timeout for the member. It fails when the
// member deadline has passed already.
func (p *memberPart) hold(r *read) error {
	if p.decoder == nil {
		return nil
	}
	if !p.body.paceDeadline() {
		p.close()
		return r.timedOut(p.name)
	}
	p.held = true
	return nil
}

// readAll reads the part's items whole, annotated.
func (p *memberPart) readAll() error {
	return p.readUpTo(math.MaxInt)
}

// errEnough ends readUpTo's reading.
var errEnough = errors.New("enough read")

// readUpTo reads the part's items, annotated, until they end or more than
// limit bytes of them are in; the rest is still to stream.
func (p *memberPart) readUpTo(limit int) error {
	if p.decoder == nil {
		return nil
	}
	size := 0
	err := p.each(func(item []byte) error {
		annotated, err := annotateValid(item, p.name)
		if err != nil {
			return err
		}
		p.items = append(p.items, annotated)
		if size += len(annotated); size > limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	p.decoder = nil
	p.close()
	var failed *doError
	if errors.As(err, &failed) {
		return unreadable(p.name, "a list", failed.error)
	}
	return err
}

// each hands the part's items still to come to do, one by one, as the
// member sends them, and then reads the answer to its end (so that the
// member's connection can carry the next request). An error of do's is
// returned in a doError; one of the member's answer is a Status that names
// the member.
func (p *memberPart) each(do func(item []byte) error) error {
	for {
		if p.held {
			// The answer has no bound, but each value in it has.
			p.bound.left = maxAnswerBytes + 1
		}
		switch p.decoder.PeekKind() {
		case ']':
			if err := readRest(p.decoder); err != nil {
				return p.readError(err)
			}
			switch _, err := p.decoder.ReadToken(); {
			case err == nil:
				return unreadable(p.name, "a list", errors.New("more than one JSON value"))
			case !errors.Is(err, io.EOF):
				return p.readError(err)
			}
			return nil
		case 0:
			// The error PeekKind met.
			_, err := p.decoder.ReadToken()
			return p.readError(err)
		}
		item, err := p.decoder.ReadValue()
		if err != nil {
			return p.readError(err)
		}
		if err := do(item); err != nil {
			return &doError{err}
		}
	}
}

// doError is an error of each's do, not of the member's answer.
type doError struct{ error }

func (e *doError) Unwrap() error { return e.error }

// readError is the Status for err, met while reading the part's answer:
// an answer that is not JSON is the member's, one that ends too soon is a
// broken connection.
func (p *memberPart) readError(err error) error {
	var syntax *jsontext.SyntacticError
	if errors.As(err, &syntax) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return unreadable(p.name, "a list", err)
	}
	return p.body.readFailed(err)
}

func (p *memberPart) close() {
	if !p.closed {
		p.closed = true
		p.body.close()
	}
}

func closeParts(parts []*memberPart) {
	for _, p := range parts {
		if p != nil {
			p.close()
		}
	}
}

// boundedReader fails with tooLarge once more than its bound is read.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, &tooLarge{limit: maxAnswerBytes}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// recorder keeps what is read through it, until stopped.
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

// writeParts sends a JSON list of the parts' items, in order, with meta as
// its metadata and a Warning for each failed member. Each part that still
// streams is held (its deadline stopped) before the answer begins.
func (r *read) writeParts(w http.ResponseWriter, contentType string, parts []*memberPart, meta metav1.ListMeta) (string, error) {
	typeMeta := metav1.TypeMeta{}
	for _, p := range parts {
		if p.typeMeta.Kind != "" {
			typeMeta = p.typeMeta
			break
		}
	}
	if typeMeta.Kind == "" {
		// No member answered: a list of no particular kind.
		typeMeta = metav1.TypeMeta{Kind: "List", APIVersion: "v1"}
	}
	head, err := json.Marshal(typeMeta)
	if err != nil {
		return "", apierrors.NewInternalError(err)
	}
	tail, err := json.Marshal(meta)
	if err != nil {
		return "", apierrors.NewInternalError(err)
	}
	for _, text := range r.warnings() {
		warning.AddWarning(r.req.Context(), "", reach.WarningText(text))
	}
	if contentType == "" {
		contentType = r.media.accept
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)

	out := &listWriter{w: bufio.NewWriterSize(w, listBuffer)}
	head = head[:len(head)-1]
	if len(head) > 1 {
		head = append(head, ',')
	}
	out.write(append(head, `"items":[`...))
	for _, p := range parts {
		for _, item := range p.items {
			out.item(item)
		}
		if p.decoder == nil {
			continue
		}
		var scratch []byte
		err := p.each(func(item []byte) error {
			var err error
			if scratch, err = appendAnnotated(scratch[:0], item, p.name, true); err != nil {
				return err
			}
			out.item(scratch)
			return out.err
		})
		p.close()
		if out.gone() {
			return outcomeAborted, nil
		}
		if err != nil {
			r.breakOff(p.name, err)
		}
	}
	out.write(append(append([]byte(`],"metadata":`), tail...), '}'))
	if out.err == nil {
		out.err = out.w.Flush()
	}
	if out.gone() {
		return outcomeAborted, nil
	}
	return r.outcome(), nil
}

// listBuffer is how much of a streamed list switchboard gathers before it
// writes: one write per item would cost a frame and a flush check each.
const listBuffer = 64 << 10

// listWriter writes a list's items, separated by commas, until it fails.
type listWriter struct {
	w     *bufio.Writer
	items int
	err   error
}

// gone says whether a write failed: the client has gone.
func (l *listWriter) gone() bool { return l.err != nil }

func (l *listWriter) write(b []byte) {
	if l.err == nil {
		_, l.err = l.w.Write(b)
	}
}

func (l *listWriter) item(b []byte) {
	if l.items > 0 {
		l.write([]byte{','})
	}
	l.items++
	l.write(b)
}

// breakOff ends an answer that has begun: a member's items could not be
// read to their end. The client sees the answer cut off and lists again.
func (r *read) breakOff(name string, err error) {
	r.fail(name, fmt.Errorf("cluster %q: its list broke off: %w", name, err))
	recordRequest("list", outcomeAborted)
	panic(http.ErrAbortHandler)
}

// readListHead reads a list's fields up to its items: kind, apiVersion and
// metadata. ok is false unless the metadata came first and the decoder
// stands at the items' first element.
func readListHead(decoder *jsontext.Decoder) (metav1.TypeMeta, metav1.ListMeta, bool) {
	var typeMeta metav1.TypeMeta
	var meta metav1.ListMeta
	if token, err := decoder.ReadToken(); err != nil || token.Kind() != '{' {
		return typeMeta, meta, false
	}
	sawMeta := false
	for decoder.PeekKind() == '"' {
		token, err := decoder.ReadToken()
		if err != nil {
			return typeMeta, meta, false
		}
		var target any
		switch token.String() {
		case "kind":
			target = &typeMeta.Kind
		case "apiVersion":
			target = &typeMeta.APIVersion
		case "metadata":
			target, sawMeta = &meta, true
		case "items":
			if !sawMeta || decoder.PeekKind() != '[' {
				return typeMeta, meta, false
			}
			_, err := decoder.ReadToken()
			return typeMeta, meta, err == nil
		default:
			if err := decoder.SkipValue(); err != nil {
				return typeMeta, meta, false
			}
			continue
		}
		value, err := decoder.ReadValue()
		if err != nil || json.Unmarshal(value, target) != nil {
			return typeMeta, meta, false
		}
	}
	return typeMeta, meta, false
}
