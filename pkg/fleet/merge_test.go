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
	if string(data) != `{"kind":"List","apiVersion":"v1","metadata":{},"items":[]}` {
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
	for name, tc := range map[string]struct{ in, want string }{
		"no annotations": {
			`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"x":[1,2]}}`,
			`{"kind":"Pod","apiVersion":"v1","metadata":{"annotations":{"switchboard.io/cluster":"member1"},"name":"web","labels":{"a":"b"}},"spec":{"x":[1,2]}}`,
		},
		"annotations": {
			`{"metadata":{"name":"web","annotations":{"z":"1","a":"2"}},"spec":{}}`,
			`{"metadata":{"name":"web","annotations":{"switchboard.io/cluster":"member1","z":"1","a":"2"}},"spec":{}}`,
		},
		"the member's own value is replaced": {
			`{"metadata":{"annotations":{"switchboard.io/cluster":"evil"}}}`,
			`{"metadata":{"annotations":{"switchboard.io/cluster":"member1"}}}`,
		},
		"the member's own value is replaced, among others": {
			`{"metadata":{"annotations":{"a":"1","switchboard.io/cluster" : "evil","z":"2"},"name":"x"}}`,
			`{"metadata":{"annotations":{"a":"1","switchboard.io/cluster" : "member1","z":"2"},"name":"x"}}`,
		},
		"annotations after the managed fields": {
			`{"metadata":{"managedFields":[{"fieldsV1":{"f:metadata":{"f:annotations":{".":{}}}}}],"annotations":{"a":"1"}}}`,
			`{"metadata":{"managedFields":[{"fieldsV1":{"f:metadata":{"f:annotations":{".":{}}}}}],"annotations":{"switchboard.io/cluster":"member1","a":"1"}}}`,
		},
		"an escaped name that unquotes to annotations": {
			`{"metadata":{"\u0061nnotations":{"a":"1"}}}`,
			`{"metadata":{"\u0061nnotations":{"switchboard.io/cluster":"member1","a":"1"}}}`,
		},
		"null annotations": {
			`{"metadata":{"annotations":null,"name":"x"}}`,
			`{"metadata":{"annotations":{"switchboard.io/cluster":"member1"},"name":"x"}}`,
		},
		"empty metadata, spaces": {
			`{ "metadata" : { } }`,
			`{ "metadata" : {"annotations":{"switchboard.io/cluster":"member1"} } }`,
		},
		"labels the same as the annotations": {
			`{"metadata":{"labels":{"app":"web"},"annotations":{"app":"web"}}}`,
			`{"metadata":{"labels":{"app":"web"},"annotations":{"switchboard.io/cluster":"member1","app":"web"}}}`,
		},
		"an earlier null, then null annotations": {
			`{"metadata":{"creationTimestamp":null,"annotations":null}}`,
			`{"metadata":{"creationTimestamp":null,"annotations":{"switchboard.io/cluster":"member1"}}}`,
		},
		"null metadata": {
			`{"metadata":null,"kind":"Pod"}`,
			`{"kind":"Pod","metadata":{"annotations":{"switchboard.io/cluster":"member1"}}}`,
		},
		"no metadata": {
			`{"kind":"Pod"}`,
			`{"kind":"Pod","metadata":{"annotations":{"switchboard.io/cluster":"member1"}}}`,
		},
		"the metadata's text earlier in the object": {
			`{"spec":{"name":"x"},"metadata":{"name":"x"}}`,
			`{"spec":{"name":"x"},"metadata":{"annotations":{"switchboard.io/cluster":"member1"},"name":"x"}}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := annotate([]byte(tc.in), "member1")
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got  %s\nwant %s", out, tc.want)
			}
			if !json.Valid(out) {
				t.Errorf("%s is not JSON", out)
			}
		})
	}
	for _, bad := range []string{
		`[]`, `{"metadata":[]}`, `{"metadata":{"annotations":[]}}`, `{"metadata":{"annotations":{"a":1}}}`, `{"metadata":"x"}`,
		// Names given twice: Go's decoders would take the member's last.
		`{"metadata":{"annotations":{"switchboard.io/cluster":"a","switchboard.io/cluster":"evil"}}}`,
		`{"metadata":{"annotations":{"switchboard.io/cluster":"a","b":"c","switchboard.io/cl\u0075ster":"evil"}}}`,
		`{"metadata":{"annotations":{}},"metadata":{"annotations":{"switchboard.io/cluster":"evil"}}}`,
		`{"metadata":{"annotations":{},"annotations":{"switchboard.io/cluster":"evil"}}}`,
		`{"metadata":{"\u0061nnotations":{},"annotations":{"switchboard.io/cluster":"evil"}}}`,
		`{"metadata":{"annotations":null,"annotations":{"switchboard.io/cluster":"evil"}}}`,
		`{"metadata":{},"spec":{"a":1,"a":2}}`,
		`{"metadata":null,"metadata":{"annotations":{"switchboard.io/cluster":"evil"}}}`,
		`{"kind":"a","kind":"b"}`,
	} {
		if out, err := annotate([]byte(bad), "member1"); err == nil {
			t.Errorf("annotate(%s) = %s, want an error", bad, out)
		}
	}
}

func TestEncodeList(t *testing.T) {
	list := &memberList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Metadata: metav1.ListMeta{ResourceVersion: "f1.x", Continue: "c"},
		Items: []json.RawMessage{json.RawMessage(`{"a":1}`), json.RawMessage(`{"b":2}`)}}
	out, err := encodeList(list)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(list)
	if string(out) != string(want) {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	out, _ = encodeList(&memberList{Items: []json.RawMessage{}})
	if want, _ := json.Marshal(&memberList{Items: []json.RawMessage{}}); string(out) != string(want) {
		t.Errorf("empty: got %s, want %s", out, want)
	}
}

// FuzzAnnotate: for any JSON object a member sends, the annotated object is
// valid JSON, its metadata carries the member's annotation, and every other
// field is unchanged; anything else is an error, never a panic.
func FuzzAnnotate(f *testing.F) {
	f.Add(`{"kind":"Pod","metadata":{"name":"a","annotations":{"x":"y"}},"spec":{}}`)
	f.Add(`{"metadata":null}`)
	f.Add(`{"spec":{"metadata":{}},"metadata":{}}`)
	f.Add(`[1]`)
	f.Add(`{"metadata":{"annotations":{"switchboard.io/cluster":"a","switchboard.io/cluster":"evil"}}}`)
	f.Add(`{"metadata":{"annotations":{}},"metadata":{"annotations":{"switchboard.io/cluster":"evil"}}}`)
	f.Add(`{"metadata":null,"metadata":{"annotations":{"switchboard.io/cluster":"evil"}}}`)
	f.Fuzz(func(t *testing.T, in string) {
		var before map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &before) != nil {
			return // not an object: a list's items always are
		}
		out, err := annotate([]byte(in), "member1")
		if err != nil {
			return
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("annotate(%s) = %s, not a JSON object: %v", in, out, err)
		}
		// Read as Kubernetes clients read it, with names matched exactly
		// (encoding/json's structs would take "AnnotAtioNs" too).
		var meta map[string]json.RawMessage
		var annotations map[string]any
		err = json.Unmarshal(after["metadata"], &meta)
		if err == nil {
			err = json.Unmarshal(meta["annotations"], &annotations)
		}
		if err != nil || annotations[ClusterAnnotation] != "member1" {
			t.Fatalf("annotate(%s) = %s: metadata %s without the annotation (%v)", in, out, after["metadata"], err)
		}
		for key, value := range before {
			if key == "metadata" {
				continue
			}
			var a, b any
			_ = json.Unmarshal(value, &a)
			_ = json.Unmarshal(after[key], &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("annotate(%s) changed %s from %s to %s", in, key, value, after[key])
			}
		}
	})
}
