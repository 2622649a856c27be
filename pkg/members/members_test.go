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

package members

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/fake"
	"github.com/switchboard-io/switchboard/pkg/health"
)

const namespace = "switchboard-system"

func newCluster(name string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterSpec{
			Endpoint:              "https://127.0.0.1:1",
			InsecureSkipTLSVerify: true,
			CredentialsSecretRef:  v1alpha1.SecretReference{Name: name + "-credentials"},
		},
	}
}

func newSecret(name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-credentials", Namespace: namespace},
		Data:       map[string][]byte{v1alpha1.SecretKeyToken: []byte("token")},
	}
}

// eventually waits for cond, failing the test after a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// One component: after Start its caches fill from the loopback and the
// hub, the readyz check passes, and a deleted Cluster's transport and
// metrics go.
func TestMembersStartSyncAndForget(t *testing.T) {
	loopback := fake.NewClientset(newCluster("east"))
	hub := kubefake.NewClientset(newSecret("east"), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"}})
	deleted := make(chan string, 1)
	m, err := New(Config{
		Loopback:    loopback,
		Hub:         hub,
		Namespace:   namespace,
		DialTimeout: time.Second,
		OnDelete:    func(name string) { deleted <- name },
		Health:      health.Options{Interval: time.Hour, Timeout: time.Second, Workers: 1, Heartbeat: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Synced() {
		t.Fatal("Synced before Start")
	}
	if err := m.ReadyzCheck().Check(nil); err == nil {
		t.Error("the readyz check passes before the caches are synced")
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Start(genericapiserver.PostStartHookContext{Context: ctx}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "caches synced", m.Synced)
	if err := m.ReadyzCheck().Check(nil); err != nil {
		t.Errorf("the readyz check fails once synced: %v", err)
	}
	if _, err := m.Clusters.Get("east"); err != nil {
		t.Errorf("the Cluster is not in the cache: %v", err)
	}
	if _, err := m.Secrets.Get("east-credentials"); err != nil {
		t.Errorf("the credentials Secret is not in the cache: %v", err)
	}
	if _, err := m.Secrets.Get("elsewhere"); err == nil {
		t.Error("a Secret of another namespace is in the cache")
	}

	cl, _ := m.Clusters.Get("east")
	secret, _ := m.Secrets.Get("east-credentials")
	if _, err := m.Transports.Get(cl, secret); err != nil {
		t.Fatal(err)
	}
	builds := m.Transports.Builds()
	if err := loopback.ClusterV1alpha1().Clusters().Delete(ctx, "east", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-deleted:
		if name != "east" {
			t.Errorf("OnDelete(%q), want east", name)
		}
	case <-time.After(time.Minute):
		t.Fatal("OnDelete was not called for the deleted Cluster")
	}
	// Forgotten: the same Cluster again builds a new transport.
	if _, err := m.Transports.Get(cl, secret); err != nil {
		t.Fatal(err)
	}
	if got := m.Transports.Builds(); got != builds+1 {
		t.Errorf("Builds() = %d after the Cluster was deleted and asked for again, want %d", got, builds+1)
	}
}

// Without a hub there are no Secrets to read, and the caches still sync.
func TestMembersWithoutAHub(t *testing.T) {
	m, err := New(Config{Loopback: fake.NewClientset(), Namespace: namespace, DialTimeout: time.Second,
		Health: health.Options{Interval: time.Hour, Timeout: time.Second, Workers: 1, Heartbeat: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Secrets != nil {
		t.Error("a Secret lister without a hub")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Start(genericapiserver.PostStartHookContext{Context: ctx}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "caches synced", m.Synced)
}
