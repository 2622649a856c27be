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
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ClusterAnnotation names, on every object the fleet endpoint returns, the
// member it came from.
const ClusterAnnotation = "switchboard.io/cluster"

// clusterColumn is the column the fleet puts first in every Table.
var clusterColumn = metav1.TableColumnDefinition{
	Name:        "Cluster",
	Type:        "string",
	Description: "The member cluster the object is in: the name of its Cluster on the hub.",
}

// memberList is a member's answer to a list, with its items left as JSON.
type memberList struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ListMeta   `json:"metadata"`
	Items           []json.RawMessage `json:"items"`
}

// merged gathers the answers of members into one list or one Table, in the
// order they are added: items and rows keep their members' order.
type merged struct {
	table bool
	// typeMeta is the first answer's kind and apiVersion.
	typeMeta metav1.TypeMeta
	items    []json.RawMessage

	// columns are the Table's columns: CLUSTER, then the first member's,
	// then any a later member added (members of other versions).
	columns []metav1.TableColumnDefinition
	index   map[string]int
	rows    []metav1.TableRow
}

func newMerged(table bool) *merged { return &merged{table: table} }

// len is the number of items or rows gathered.
func (m *merged) len() int {
	if m.table {
		return len(m.rows)
	}
	return len(m.items)
}

// add gathers one member's list or Table and returns its list metadata.
func (m *merged) add(cluster string, body []byte) (metav1.ListMeta, error) {
	if m.table {
		return m.addTable(cluster, body)
	}
	var list memberList
	if err := json.Unmarshal(body, &list); err != nil {
		return metav1.ListMeta{}, fmt.Errorf("decoding the list: %w", err)
	}
	if m.typeMeta.Kind == "" {
		m.typeMeta = list.TypeMeta
	}
	for _, item := range list.Items {
		annotated, err := annotate(item, cluster)
		if err != nil {
			return metav1.ListMeta{}, err
		}
		m.items = append(m.items, annotated)
	}
	return list.Metadata, nil
}

// addObject gathers one member's object, the answer to a get, as an item;
// in a Table, the get's answer is a Table already.
func (m *merged) addObject(cluster string, body []byte) error {
	if m.table {
		_, err := m.addTable(cluster, body)
		return err
	}
	annotated, err := annotate(body, cluster)
	if err != nil {
		return err
	}
	var typeMeta metav1.TypeMeta
	if err := json.Unmarshal(body, &typeMeta); err != nil {
		return fmt.Errorf("decoding the object: %w", err)
	}
	if m.typeMeta.Kind == "" {
		m.typeMeta = typeMeta
	}
	m.items = append(m.items, annotated)
	return nil
}

func (m *merged) addTable(cluster string, body []byte) (metav1.ListMeta, error) {
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		return metav1.ListMeta{}, fmt.Errorf("decoding the Table: %w", err)
	}
	if table.Kind != "Table" {
		return metav1.ListMeta{}, fmt.Errorf("the answer is a %s %s, not a Table", table.APIVersion, table.Kind)
	}
	if m.typeMeta.Kind == "" {
		m.typeMeta = table.TypeMeta
	}
	// Where each of this member's columns goes in the merged Table.
	at := make([]int, len(table.ColumnDefinitions))
	for i, column := range table.ColumnDefinitions {
		at[i] = m.column(column)
	}
	for _, row := range table.Rows {
		cells := make([]any, len(at)+1)
		cells[0] = cluster
		for i, cell := range row.Cells {
			if i < len(at) {
				if at[i] >= len(cells) {
					cells = append(cells, make([]any, at[i]+1-len(cells))...)
				}
				cells[at[i]] = cell
			}
		}
		if len(row.Object.Raw) > 0 {
			annotated, err := annotate(row.Object.Raw, cluster)
			if err != nil {
				return metav1.ListMeta{}, err
			}
			row.Object = runtime.RawExtension{Raw: annotated}
		}
		row.Cells = cells
		m.rows = append(m.rows, row)
	}
	return table.ListMeta, nil
}

// column returns where column is in the merged Table, adding it if no
// member had it yet. Columns are told apart by name, as kubectl shows them.
func (m *merged) column(column metav1.TableColumnDefinition) int {
	if m.index == nil {
		m.columns = []metav1.TableColumnDefinition{clusterColumn}
		m.index = map[string]int{clusterColumn.Name: 0}
	}
	if i, ok := m.index[column.Name]; ok {
		return i
	}
	m.index[column.Name] = len(m.columns)
	m.columns = append(m.columns, column)
	return len(m.columns) - 1
}

// list is the merged answer, with meta as its list metadata.
func (m *merged) list(meta metav1.ListMeta) any {
	if m.table {
		if m.index == nil {
			m.column(metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name"})
		}
		for i := range m.rows {
			// Rows from a member with fewer columns get empty cells.
			if n := len(m.columns) - len(m.rows[i].Cells); n > 0 {
				m.rows[i].Cells = append(m.rows[i].Cells, make([]any, n)...)
			}
		}
		typeMeta := m.typeMeta
		if typeMeta.Kind == "" {
			typeMeta = metav1.TypeMeta{Kind: "Table", APIVersion: metav1.SchemeGroupVersion.String()}
		}
		rows := m.rows
		if rows == nil {
			rows = []metav1.TableRow{}
		}
		return &metav1.Table{TypeMeta: typeMeta, ListMeta: meta, ColumnDefinitions: m.columns, Rows: rows}
	}
	items := m.items
	if items == nil {
		items = []json.RawMessage{}
	}
	typeMeta := m.typeMeta
	if typeMeta.Kind == "" {
		// No member answered: a list of no particular kind.
		typeMeta = metav1.TypeMeta{Kind: "List", APIVersion: "v1"}
	}
	return &memberList{TypeMeta: typeMeta, Metadata: meta, Items: items}
}

// annotate adds ClusterAnnotation to a JSON object's metadata.annotations.
// It reads the object's tokens without decoding them, splices the
// annotation in where the annotations are, and copies the rest as it came:
// decoding and encoding whole objects costs several times more, and a
// fleet list of thousands of objects spends most of its time here. An
// object that gives a name twice anywhere is an error: Go's decoders take
// the last metadata, annotations or annotation, and a member's own
// ClusterAnnotation given after the fleet's would win.
func annotate(object []byte, cluster string) ([]byte, error) {
	return appendAnnotated(make([]byte, 0, len(object)+len(ClusterAnnotation)+len(cluster)+24), object, cluster, false)
}

// annotateValid is annotate for an object that a strict jsontext Decoder
// has read already: valid, with no name given twice.
func annotateValid(object []byte, cluster string) ([]byte, error) {
	return appendAnnotated(make([]byte, 0, len(object)+len(ClusterAnnotation)+len(cluster)+24), object, cluster, true)
}

// errGivenTwice is the error of JSON that gives a name twice in an object.
var errGivenTwice = errors.New("it is not valid JSON, or gives a name twice in an object")

// decoders are jsontext Decoders, reset for each object annotated.
var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

func decoderFor(data []byte) *jsontext.Decoder {
	d := decoders.Get().(*jsontext.Decoder)
	// Names given twice are an error: Go's decoders take the last
	// metadata, annotations or ClusterAnnotation, and the fleet's
	// annotation must be the one clients read.
	d.Reset(bytes.NewBuffer(data))
	return d
}

// readRest reads the rest of the object that d stands in, to its end: a
// name given twice anywhere in it is an error.
func readRest(d *jsontext.Decoder) error {
	for d.StackDepth() > 0 {
		var err error
		switch d.PeekKind() {
		case '}', ']':
			_, err = d.ReadToken()
		default:
			err = d.SkipValue()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// appendAnnotated appends object, annotated as annotate does, to dst;
// valid says that object is known to be valid JSON with no name given
// twice, so what follows the annotation need not be read.
func appendAnnotated(dst, object []byte, cluster string, valid bool) ([]byte, error) {
	d := decoderFor(object)
	defer decoders.Put(d)
	if token, err := d.ReadToken(); err != nil || token.Kind() != '{' {
		return nil, fmt.Errorf("decoding an object: not a JSON object")
	}
	for {
		switch d.PeekKind() {
		case '}':
			// No metadata.
			return annotateSlowly(dst, object, cluster)
		case 0:
			_, err := d.ReadToken()
			return nil, fmt.Errorf("decoding an object: %w", err)
		}
		name, err := d.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("decoding an object: %w", err)
		}
		if name.String() != "metadata" {
			if err := d.SkipValue(); err != nil {
				return nil, fmt.Errorf("decoding an object: %w", err)
			}
			continue
		}
		switch d.PeekKind() {
		case 'n':
			return annotateSlowly(dst, object, cluster)
		case '{':
			return appendMetadataAnnotated(dst, object, d, cluster, valid)
		}
		return nil, fmt.Errorf("decoding an object: its metadata is not an object")
	}
}

// appendMetadataAnnotated appends data to dst with ClusterAnnotation added
// to the metadata object at which d, a decoder of data, stands.
func appendMetadataAnnotated(dst, data []byte, d *jsontext.Decoder, cluster string, valid bool) ([]byte, error) {
	failed := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("decoding an object's metadata: %w", err)
	}
	// splice appends data with insert in place of data[start:end], once
	// the rest of data has been read.
	splice := func(start, end int64, insert ...[]byte) ([]byte, error) {
		if !valid {
			if err := readRest(d); err != nil {
				return failed(err)
			}
		}
		dst = append(dst, data[:start]...)
		for _, b := range insert {
			dst = append(dst, b...)
		}
		return append(dst, data[end:]...), nil
	}
	entry, err := jsontext.AppendQuote([]byte(annotationName), cluster)
	if err != nil {
		return failed(err)
	}
	if _, err := d.ReadToken(); err != nil {
		return failed(err)
	}
	open := d.InputOffset()
	for fields := 0; ; fields++ {
		switch d.PeekKind() {
		case '}':
			// No annotations yet: they become the metadata's first field.
			comma := []byte(",")
			if fields == 0 {
				comma = nil
			}
			return splice(open, open, []byte(`"annotations":{`), entry, []byte("}"), comma)
		case 0:
			_, err := d.ReadToken()
			return failed(err)
		}
		name, err := d.ReadToken()
		if err != nil {
			return failed(err)
		}
		if name.String() != "annotations" {
			if err := d.SkipValue(); err != nil {
				return failed(err)
			}
			continue
		}
		switch d.PeekKind() {
		case 'n':
			value, err := d.ReadValue()
			if err != nil {
				return failed(err)
			}
			end := d.InputOffset()
			return splice(end-int64(len(value)), end, []byte("{"), entry, []byte("}"))
		case '{':
		default:
			return failed(fmt.Errorf("its annotations are not an object"))
		}
		if _, err := d.ReadToken(); err != nil {
			return failed(err)
		}
		at := d.InputOffset()
		for keys := 0; ; keys++ {
			switch d.PeekKind() {
			case '}':
				comma := []byte(",")
				if keys == 0 {
					comma = nil
				}
				return splice(at, at, entry, comma)
			case 0:
				_, err := d.ReadToken()
				return failed(err)
			}
			key, err := d.ReadToken()
			if err != nil {
				return failed(err)
			}
			ours := key.String() == ClusterAnnotation // the token lasts until the next read
			value, err := d.ReadValue()
			if err != nil {
				return failed(err)
			}
			if value.Kind() != '"' {
				return failed(fmt.Errorf("its annotations are not a map of strings"))
			}
			if ours {
				// The member's own value gives way to the fleet's.
				end := d.InputOffset()
				return splice(end-int64(len(value)), end, entry[len(annotationName):])
			}
		}
	}
}

// annotationName is ClusterAnnotation as a JSON object name, with its colon.
var annotationName = strconv.Quote(ClusterAnnotation) + ":"

// annotateSlowly appends object to dst with ClusterAnnotation added, by
// decoding its fields: for objects without metadata, or with null.
func annotateSlowly(dst, object []byte, cluster string) ([]byte, error) {
	if !jsontext.Value(object).IsValid() {
		// Names given twice, of which json.Unmarshal would take the last.
		return nil, fmt.Errorf("decoding an object: %w", errGivenTwice)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, fmt.Errorf("decoding an object: %w", err)
	}
	metadata := []byte(fields["metadata"])
	if len(metadata) == 0 || string(metadata) == "null" {
		metadata = []byte("{}")
	}
	d := decoderFor(metadata)
	defer decoders.Put(d)
	annotated, err := appendMetadataAnnotated(nil, metadata, d, cluster, true)
	if err != nil {
		return nil, err
	}
	fields["metadata"] = annotated
	encoded, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	return append(dst, encoded...), nil
}

// encodeList writes a list of items, each valid JSON already, without
// encoding/json checking every item again.
func encodeList(list *memberList) ([]byte, error) {
	typeMeta, err := json.Marshal(list.TypeMeta)
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(list.Metadata)
	if err != nil {
		return nil, err
	}
	size := len(typeMeta) + len(meta) + 32
	for _, item := range list.Items {
		size += len(item) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, typeMeta[:len(typeMeta)-1]...)
	if len(typeMeta) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"metadata":`...)
	out = append(out, meta...)
	out = append(out, `,"items":[`...)
	for i, item := range list.Items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, item...)
	}
	return append(out, "]}"...), nil
}
