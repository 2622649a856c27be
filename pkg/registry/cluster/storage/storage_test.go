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

package storage

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"
	"k8s.io/apiserver/pkg/registry/rest"
	etcd3testing "k8s.io/apiserver/pkg/storage/etcd3/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/install"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// newStorage runs an embedded etcd for the test and returns the Cluster
// storage on top of it.
func newStorage(t *testing.T) *ClusterStorage {
	t.Helper()
	return newStorageWith(t, nil)
}

// newStorageWith is newStorage with a check of the disk's space.
func newStorageWith(t *testing.T, diskSpace func(context.Context) error) *ClusterStorage {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	codecs := serializer.NewCodecFactory(scheme)

	_, config := etcd3testing.NewUnsecuredEtcd3TestClientServer(t)
	config.Codec = codecs.LegacyCodec(v1alpha1.SchemeGroupVersion)
	restOptions := generic.RESTOptions{
		StorageConfig:           config.ForResource(cluster.Resource("clusters")),
		Decorator:               generic.UndecoratedStorage,
		DeleteCollectionWorkers: 1,
		ResourcePrefix:          "clusters",
	}
	s, err := NewStorage(scheme, restOptions, diskSpace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Cluster.DestroyFunc)
	return s
}

func newCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": "prod"}},
		Spec: cluster.ClusterSpec{
			Connection:           cluster.ConnectionDirect,
			Endpoint:             "https://10.0.0.12:6443",
			CredentialsSecretRef: cluster.SecretReference{Name: name + "-credentials"},
		},
	}
}

func TestCreate(t *testing.T) {
	s := newStorage(t)
	test := genericregistrytest.New(t, s.Cluster.Store).ClusterScope()
	invalidEndpoint := newCluster("bad-endpoint")
	invalidEndpoint.Spec.Endpoint = "http://10.0.0.12"
	test.TestCreate(newCluster("member1"), newCluster("_not_a_name_"), invalidEndpoint)
}

func TestUpdate(t *testing.T) {
	s := newStorage(t)
	test := genericregistrytest.New(t, s.Cluster.Store).ClusterScope()
	test.TestUpdate(
		newCluster("member1"),
		func(obj runtime.Object) runtime.Object {
			c := obj.(*cluster.Cluster)
			c.Spec.Endpoint = "https://10.0.0.13:6443"
			return c
		},
		func(obj runtime.Object) runtime.Object {
			c := obj.(*cluster.Cluster)
			c.Spec.Endpoint = "https://user:pw@10.0.0.13:6443"
			return c
		},
	)
}

func TestDelete(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Cluster.Store).ClusterScope().ReturnDeletedObject().TestDelete(newCluster("member1"))
}

func TestGet(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Cluster.Store).ClusterScope().TestGet(newCluster("member1"))
}

func TestList(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Cluster.Store).ClusterScope().TestList(newCluster("member1"))
}

func TestWatch(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Cluster.Store).ClusterScope().TestWatch(
		newCluster("member1"),
		[]labels.Set{{"env": "prod"}},
		[]labels.Set{{"env": "dev"}},
		[]fields.Set{{"metadata.name": "member1"}},
		[]fields.Set{{"metadata.name": "member2"}},
	)
}

func TestMainResourceKeepsStatusAndStatusKeepsSpec(t *testing.T) {
	s := newStorage(t)
	ctx := genericregistrytest.NewClusterScopeContext(s.Cluster.Store)

	created := newCluster("member1")
	created.Status.KubernetesVersion = "v9.9.9" // dropped on create
	obj, err := s.Cluster.Create(ctx, created, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*cluster.Cluster)
	if c.Status.KubernetesVersion != "" || c.Generation != 1 {
		t.Fatalf("after create: status=%+v generation=%d, want empty status and generation 1", c.Status, c.Generation)
	}

	// A status write changes status only.
	c = c.DeepCopy()
	c.Status.KubernetesVersion = "v1.37.2"
	c.Spec.Endpoint = "https://ignored:6443"
	obj, _, err = s.Status.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(c), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c = obj.(*cluster.Cluster)
	if c.Status.KubernetesVersion != "v1.37.2" || c.Spec.Endpoint != "https://10.0.0.12:6443" || c.Generation != 1 {
		t.Fatalf("after status update: version=%q endpoint=%q generation=%d", c.Status.KubernetesVersion, c.Spec.Endpoint, c.Generation)
	}

	// A write to the main resource changes spec only, and bumps the generation.
	c = c.DeepCopy()
	c.Status.KubernetesVersion = "v0.0.1"
	c.Spec.Endpoint = "https://10.0.0.99:6443"
	obj, _, err = s.Cluster.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(c), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c = obj.(*cluster.Cluster)
	if c.Status.KubernetesVersion != "v1.37.2" || c.Spec.Endpoint != "https://10.0.0.99:6443" || c.Generation != 2 {
		t.Fatalf("after spec update: version=%q endpoint=%q generation=%d", c.Status.KubernetesVersion, c.Spec.Endpoint, c.Generation)
	}

	// An invalid status is refused with the field named.
	c = c.DeepCopy()
	c.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "Maybe", Reason: "Probed", LastTransitionTime: metav1.Now()}}
	_, _, err = s.Status.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(c), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("invalid status: err = %v, want Invalid", err)
	}

	// A status write never creates a Cluster.
	ghost := newCluster("ghost")
	_, _, err = s.Status.Update(ctx, ghost.Name, rest.DefaultUpdatedObjectInfo(ghost), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, true, &metav1.UpdateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("status update of a missing Cluster: err = %v, want NotFound", err)
	}
}

func TestTablePrintsThroughStorage(t *testing.T) {
	s := newStorage(t)
	ctx := genericregistrytest.NewClusterScopeContext(s.Cluster.Store)
	if _, err := s.Cluster.Create(ctx, newCluster("member1"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := s.Cluster.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	table, err := s.Cluster.ConvertToTable(ctx, list, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != 1 || table.Rows[0].Cells[0] != "member1" || table.ResourceVersion == "" {
		t.Fatalf("table = %+v", table)
	}
}

// TestDiskSpaceRefusesWrites: while the disk check fails, creates and
// updates of Clusters and their status are refused with a 507 that says
// why, and nothing is stored; dry runs, reads and deletes go on; once the
// check passes again, so do writes.
func TestDiskSpaceRefusesWrites(t *testing.T) {
	var full atomic.Bool
	s := newStorageWith(t, func(context.Context) error {
		if full.Load() {
			return errors.New("the embedded etcd's data directory has 1.0 MiB free, less than the 128.0 MiB that --embedded-etcd-min-free-disk-bytes keeps free")
		}
		return nil
	})
	ctx := genericapirequest.WithNamespace(genericapirequest.NewContext(), metav1.NamespaceNone)
	if _, err := s.Cluster.Create(ctx, newCluster("kept"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	refused := func(what string, err error) {
		t.Helper()
		status, ok := err.(apierrors.APIStatus)
		if !ok {
			t.Fatalf("%s with the disk full: %v, want a 507", what, err)
		}
		st := status.Status()
		if st.Code != http.StatusInsufficientStorage || st.Reason != StatusReasonInsufficientStorage ||
			!strings.Contains(st.Message, "switchboard's storage is almost full: the embedded etcd's data directory has 1.0 MiB free") ||
			!strings.Contains(st.Message, "until an administrator frees space") {
			t.Errorf("%s with the disk full: %d %s %q", what, st.Code, st.Reason, st.Message)
		}
	}
	_, err := s.Cluster.Create(ctx, newCluster("refused"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	refused("create", err)
	if _, err := s.Cluster.Get(ctx, "refused", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused Cluster: %v, want NotFound", err)
	}
	if _, err := s.Cluster.Create(ctx, newCluster("dry"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("a dry-run create with the disk full: %v", err)
	}
	update := func(c *cluster.Cluster) *cluster.Cluster {
		c = c.DeepCopy()
		c.Labels["env"] = "staging"
		c.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Probed", LastTransitionTime: metav1.Now()}}
		return c
	}
	obj, err := s.Cluster.Get(ctx, "kept", &metav1.GetOptions{})
	if err != nil {
		t.Fatalf("a read with the disk full: %v", err)
	}
	kept := obj.(*cluster.Cluster)
	_, _, err = s.Cluster.Update(ctx, "kept", rest.DefaultUpdatedObjectInfo(update(kept)), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	refused("update", err)
	_, _, err = s.Status.Update(ctx, "kept", rest.DefaultUpdatedObjectInfo(update(kept)), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	refused("status update", err)
	if obj, _ := s.Cluster.Get(ctx, "kept", &metav1.GetOptions{}); obj.(*cluster.Cluster).ResourceVersion != kept.ResourceVersion {
		t.Errorf("a refused update was stored: resourceVersion %s, then %s", kept.ResourceVersion, obj.(*cluster.Cluster).ResourceVersion)
	}

	full.Store(false)
	if _, _, err := s.Cluster.Update(ctx, "kept", rest.DefaultUpdatedObjectInfo(update(kept)), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		t.Errorf("an update once there is room: %v", err)
	}
	full.Store(true)
	if _, _, err := s.Cluster.Delete(ctx, "kept", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Errorf("a delete with the disk full: %v", err)
	}
}
