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
	return &memberList{TypeMeta: m.typeMeta, Metadata: meta, Items: items}
}

// annotate adds ClusterAnnotation to a JSON object's metadata.annotations.
func annotate(object []byte, cluster string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, fmt.Errorf("decoding an object: %w", err)
	}
	var metadata map[string]json.RawMessage
	if raw, ok := fields["metadata"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &metadata); err != nil {
			return nil, fmt.Errorf("decoding an object's metadata: %w", err)
		}
	}
	if metadata == nil {
		metadata = map[string]json.RawMessage{}
	}
	annotations := map[string]string{}
	if raw, ok := metadata["annotations"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &annotations); err != nil {
			return nil, fmt.Errorf("decoding an object's annotations: %w", err)
		}
	}
	annotations[ClusterAnnotation] = cluster
	var err error
	if metadata["annotations"], err = json.Marshal(annotations); err != nil {
		return nil, err
	}
	if fields["metadata"], err = json.Marshal(metadata); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}
