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

// Package storage serves Cluster objects from etcd through the generic registry.
package storage

import (
	"context"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	clusterregistry "github.com/switchboard-io/switchboard/pkg/registry/cluster"
)

// ClusterStorage holds the storage of the clusters resource and its subresources.
type ClusterStorage struct {
	Cluster *REST
	Status  *StatusREST
}

// REST serves the clusters resource.
type REST struct {
	*genericregistry.Store
}

var (
	_ rest.ShortNamesProvider = &REST{}
	_ rest.CategoriesProvider = &REST{}
)

// ShortNames are what kubectl accepts for the resource besides its names.
// "clusters" is also the resource of Cluster API, Karmada, Rancher and
// others, so on a shared hub `kubectl get clusters` may mean someone
// else's; these short names stay switchboard's.
func (r *REST) ShortNames() []string { return []string{"sbc", "sbcluster"} }

// Categories put the resource in `kubectl get switchboard`.
func (r *REST) Categories() []string { return []string{"switchboard"} }

// NewStorage returns the storage of clusters and clusters/status. When
// diskSpace is set, it is asked before every create and update (dry runs
// aside), and its error refuses the write with 507 Insufficient Storage.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, diskSpace func(context.Context) error) (*ClusterStorage, error) {
	strategy := clusterregistry.NewStrategy(scheme)
	statusStrategy := clusterregistry.NewStatusStrategy(strategy)

	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &cluster.Cluster{} },
		NewListFunc:               func() runtime.Object { return &cluster.ClusterList{} },
		PredicateFunc:             clusterregistry.MatchCluster,
		DefaultQualifiedResource:  cluster.Resource("clusters"),
		SingularQualifiedResource: cluster.Resource("cluster"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: clusterregistry.TableConvertor{},
	}
	if diskSpace != nil {
		store.BeginCreate = func(ctx context.Context, _ runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
			return finishNothing, roomFor(ctx, diskSpace, options.DryRun)
		}
		store.BeginUpdate = func(ctx context.Context, _, _ runtime.Object, options *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
			return finishNothing, roomFor(ctx, diskSpace, options.DryRun)
		}
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: clusterregistry.GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, err
	}

	statusStore := *store
	statusStore.UpdateStrategy = statusStrategy
	statusStore.ResetFieldsStrategy = statusStrategy

	return &ClusterStorage{
		Cluster: &REST{Store: store},
		Status:  &StatusREST{store: &statusStore},
	}, nil
}

func finishNothing(context.Context, bool) {}

// StatusReasonInsufficientStorage is the reason of a write refused because
// the storage has no room for it (HTTP 507).
const StatusReasonInsufficientStorage metav1.StatusReason = "InsufficientStorage"

// roomFor returns the 507 that refuses a write when diskSpace says there is
// no room, unless the write is a dry run, which stores nothing.
func roomFor(ctx context.Context, diskSpace func(context.Context) error, dryRun []string) error {
	if len(dryRun) > 0 {
		return nil
	}
	err := diskSpace(ctx)
	if err == nil {
		return nil
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusInsufficientStorage,
		Reason: StatusReasonInsufficientStorage,
		Message: "switchboard's storage is almost full: " + err.Error() +
			"; Clusters cannot be created or changed until an administrator frees space there. Reads, deletes and proxying to members go on",
	}}
}

// StatusREST serves the clusters/status subresource.
type StatusREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Patcher             = &StatusREST{}
	_ rest.Storage             = &StatusREST{}
	_ rest.ResetFieldsStrategy = &StatusREST{}
	_ rest.TableConvertor      = &StatusREST{}
)

// New returns an empty Cluster.
func (r *StatusREST) New() runtime.Object { return &cluster.Cluster{} }

// Destroy does nothing: the store it shares with REST is destroyed there.
func (r *StatusREST) Destroy() {}

// Get returns a Cluster; patching the status needs it.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update writes the status of a Cluster. A status write never creates one.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields says which fields a status write resets.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable prints the Cluster as the main resource does.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}
