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
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

func TestAttachChecksTheCluster(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for name, connection := range map[string]v1alpha1.Connection{"edge1": v1alpha1.ConnectionTunnel, "member1": v1alpha1.ConnectionDirect} {
		if err := indexer.Add(&v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Connection: connection}}); err != nil {
			t.Fatal(err)
		}
	}
	synced := true
	r := &AttachREST{Clusters: listers.NewClusterLister(indexer), Synced: func() bool { return synced }, Tunnels: tunnel.NewServer(tunnel.Config{})}
	if got := r.ConnectMethods(); len(got) != 1 || got[0] != "POST" {
		t.Errorf("methods = %v, want POST only: the hub authorizes it as create", got)
	}

	for _, tc := range []struct {
		name    string
		cluster string
		synced  bool
		check   func(error) bool
		message string
	}{
		{"tunnelled", "edge1", true, func(err error) bool { return err == nil }, ""},
		{"direct", "member1", true, apierrors.IsBadRequest, "set spec.connection to Tunnel"},
		{"missing", "nope", true, apierrors.IsNotFound, `"nope" not found`},
		{"caches loading", "edge1", false, apierrors.IsServiceUnavailable, "still loading"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synced = tc.synced
			handler, err := r.Connect(context.Background(), tc.cluster, nil, nil)
			if !tc.check(err) {
				t.Fatalf("Connect(%s) = %v", tc.cluster, err)
			}
			if err == nil && handler == nil {
				t.Error("no handler")
			}
			if err != nil && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
		})
	}
}
