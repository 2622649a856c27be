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
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A member of an older version has no IP column and one of its own; the
// merged Table has CLUSTER, the first member's columns, then the other's,
// and every row's cells line up under them.
func TestMergeTablesWithMixedColumns(t *testing.T) {
	newer := `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},
		"columnDefinitions":[{"name":"Name","type":"string","format":"name"},{"name":"Status","type":"string"},{"name":"IP","type":"string","priority":1}],
		"rows":[{"cells":["web","Running","10.0.0.1"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"web","namespace":"ns"}}}]}`
	older := `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"9"},
		"columnDefinitions":[{"name":"Name","type":"string","format":"name"},{"name":"Age","type":"string"},{"name":"Status","type":"string"}],
		"rows":[{"cells":["db","5m","Pending"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"db","annotations":{"team":"x"}}}}]}`
	m := newMerged(true)
	meta, err := m.add("member1", []byte(newer))
	if err != nil {
		t.Fatal(err)
	}
	if meta.ResourceVersion != "7" {
		t.Errorf("list metadata %+v", meta)
	}
	if _, err := m.add("member2", []byte(older)); err != nil {
		t.Fatal(err)
	}
	table := m.list(metav1.ListMeta{ResourceVersion: "fleet"}).(*metav1.Table)
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	if want := []string{"Cluster", "Name", "Status", "IP", "Age"}; !reflect.DeepEqual(names, want) {
		t.Errorf("columns %v, want %v", names, want)
	}
	if table.ColumnDefinitions[3].Priority != 1 {
		t.Errorf("the IP column lost its priority (-o wide): %+v", table.ColumnDefinitions[3])
	}
	want := [][]any{{"member1", "web", "Running", "10.0.0.1", nil}, {"member2", "db", "Pending", nil, "5m"}}
	for i, row := range table.Rows {
		if !reflect.DeepEqual(row.Cells, want[i]) {
			t.Errorf("row %d: %v, want %v", i, row.Cells, want[i])
		}
	}
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(table.Rows[1].Object.Raw, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Annotations[ClusterAnnotation] != "member2" || obj.Annotations["team"] != "x" {
		t.Errorf("row object annotations %v: want the member's and the member's own", obj.Annotations)
	}
	if table.ResourceVersion != "fleet" || table.Kind != "Table" {
		t.Errorf("table %s %s at %q", table.APIVersion, table.Kind, table.ResourceVersion)
	}
}

func TestMergeEmptyAndBroken(t *testing.T) {
	table := newMerged(true).list(metav1.ListMeta{}).(*metav1.Table)
	if table.Kind != "Table" || len(table.ColumnDefinitions) == 0 || table.Rows == nil {
		t.Errorf("an empty fleet's Table: %+v", table)
	}
	data, _ := json.Marshal(newMerged(false).list(metav1.ListMeta{}))
	if string(data) != `{"metadata":{},"items":[]}` {
		t.Errorf("an empty fleet's list: %s", data)
	}
	for _, body := range []string{`not json`, `{"items":[1]}`, `{"items":[{"metadata":[]}]}`, `{"items":[{"metadata":{"annotations":"x"}}]}`} {
		if _, err := newMerged(false).add("m", []byte(body)); err == nil {
			t.Errorf("merging %s: no error", body)
		}
	}
	if _, err := newMerged(true).add("m", []byte(`{"kind":"PodList","apiVersion":"v1"}`)); err == nil {
		t.Error("a list where a Table was asked for: no error")
	}
}

func TestAnnotateKeepsTheObject(t *testing.T) {
	out, err := annotate([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"x":[1,2]}}`), "member1")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"switchboard.io/cluster":"member1"},"labels":{"a":"b"},"name":"web"},"spec":{"x":[1,2]}}`
	if string(out) != want {
		t.Errorf("got %s\nwant %s", out, want)
	}
}
