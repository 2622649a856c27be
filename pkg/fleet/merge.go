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
// It reads the object's fields only up to its metadata (which Kubernetes
// writes third, after kind and apiVersion), rewrites the metadata, and
// copies the rest of the object as it came: decoding and encoding whole
// objects costs several times more, and a fleet list of thousands of
// objects spends most of its time here. The object must be valid JSON,
// which decoding the list it came in checked.
func annotate(object []byte, cluster string) ([]byte, error) {
	start, end, found, err := fieldSpan(object, "metadata")
	if err != nil {
		return nil, fmt.Errorf("decoding an object: %w", err)
	}
	if !found || string(object[start:end]) == "null" {
		return annotateSlowly(object, cluster)
	}
	metadata, err := annotateMetadata(object[start:end], cluster)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(object)+len(metadata)-(end-start))
	out = append(out, object[:start]...)
	out = append(out, metadata...)
	return append(out, object[end:]...), nil
}

// fieldSpan is where the value of an object's first field key lies in it
// (null included); found is false when it has none.
func fieldSpan(object []byte, key string) (start, end int, found bool, err error) {
	decoder := json.NewDecoder(bytes.NewReader(object))
	if token, err := decoder.Token(); err != nil || token != json.Delim('{') {
		return 0, 0, false, fmt.Errorf("not a JSON object")
	}
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return 0, 0, false, err
		}
		var value json.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return 0, 0, false, err
		}
		if name, _ := token.(string); name == key {
			end := int(decoder.InputOffset())
			return end - len(value), end, true, nil
		}
	}
	return 0, 0, false, nil
}

// annotateMetadata adds ClusterAnnotation to a metadata object.
func annotateMetadata(metadata []byte, cluster string) ([]byte, error) {
	start, end, found, err := fieldSpan(metadata, "annotations")
	if err != nil {
		return nil, fmt.Errorf("decoding an object's metadata: %w", err)
	}
	var annotations map[string]string
	if found {
		if err := json.Unmarshal(metadata[start:end], &annotations); err != nil {
			return nil, fmt.Errorf("decoding an object's annotations: %w", err)
		}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[ClusterAnnotation] = cluster
	encoded, err := json.Marshal(annotations)
	if err != nil {
		return nil, err
	}
	if found {
		out := make([]byte, 0, len(metadata)+len(encoded)-(end-start))
		out = append(out, metadata[:start]...)
		out = append(out, encoded...)
		return append(out, metadata[end:]...), nil
	}
	// No annotations yet: the first field of the metadata, which
	// fieldSpan has checked is an object.
	rest := bytes.TrimSpace(bytes.TrimSpace(metadata)[1:])
	out := make([]byte, 0, len(metadata)+len(encoded)+16)
	out = append(out, `{"annotations":`...)
	out = append(out, encoded...)
	if rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

// annotateSlowly adds ClusterAnnotation by decoding the object's fields.
func annotateSlowly(object []byte, cluster string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, fmt.Errorf("decoding an object: %w", err)
	}
	metadata := fields["metadata"]
	if len(metadata) == 0 || string(metadata) == "null" {
		metadata = []byte("{}")
	}
	annotated, err := annotateMetadata(metadata, cluster)
	if err != nil {
		return nil, err
	}
	fields["metadata"] = annotated
	return json.Marshal(fields)
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
