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
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod as a member lists it, about 1.5 KiB of JSON.
func benchPod(b *testing.B) []byte {
	no := false
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c5b7f6-x2x9k", Namespace: "workloads", UID: "0b1c3c51-4a2f-4c1e-9f3e-6b1f0b5a2f11", ResourceVersion: "123456",
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9c5b7f6"}, Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z"}},
		Spec: corev1.PodSpec{NodeName: "node-1", AutomountServiceAccountToken: &no, Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/web:1.2.3", Args: []string{"--port=8080", "--log-level=info"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "eu-1"}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.12", HostIP: "192.168.0.3",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}},
	}
	data, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkAnnotate compares the splice into the metadata with decoding
// and encoding the object's fields, in the same run.
func BenchmarkAnnotate(b *testing.B) {
	pod := benchPod(b)
	for name, fn := range map[string]func([]byte, string) ([]byte, error){"splice": annotate, "decode-encode": func(object []byte, cluster string) ([]byte, error) { return annotateSlowly(nil, object, cluster) }} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(pod)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fn(pod, "member1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMergePage is the fleet's work on one page of 500 pods: decode
// the member's list, annotate every item, encode the fleet's; against
// decoding the list alone, in the same run.
func BenchmarkMergePage(b *testing.B) {
	pod := benchPod(b)
	list := memberList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Metadata: metav1.ListMeta{ResourceVersion: "1", Continue: "next"}}
	for range 500 {
		list.Items = append(list.Items, pod)
	}
	body, err := json.Marshal(list)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode only", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var l memberList
			if err := json.Unmarshal(body, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("merge and encode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			m := newMerged(false)
			meta, err := m.add("member1", body)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := encodeList(m.list(meta).(*memberList)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r := newTestRead(b, nil, []string{"member1"}, "limit=500", false)
			r.ask = func(context.Context, string, url.Values) answer {
				return answer{body: body, contentType: "application/json"}
			}
			if _, err := r.list(discardWriter{header: http.Header{}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header       { return d.header }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
