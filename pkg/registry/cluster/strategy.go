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

// Package cluster holds the registry strategies for Cluster objects.
package cluster

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/validation"
)

// Strategy is the logic for creating and updating Clusters through
// the main resource. Users own the spec; the status belongs to switchboard.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy for the clusters resource.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{typer, names.SimpleNameGenerator}
}

// NamespaceScoped is false: a Cluster belongs to the whole hub.
func (Strategy) NamespaceScoped() bool { return false }

// GetResetFields says that writes to the main resource never set status.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"cluster.switchboard.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// PrepareForCreate drops any status the client sent and starts the generation at 1.
func (Strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	c := obj.(*cluster.Cluster)
	c.Status = cluster.ClusterStatus{}
	c.Generation = 1
}

// PrepareForUpdate keeps the stored status and bumps the generation when the spec changes.
func (Strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	newCluster := obj.(*cluster.Cluster)
	oldCluster := old.(*cluster.Cluster)
	newCluster.Status = oldCluster.Status
	if !apiequality.Semantic.DeepEqual(newCluster.Spec, oldCluster.Spec) {
		newCluster.Generation = oldCluster.Generation + 1
	}
}

// Validate checks a new Cluster.
func (Strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateCluster(obj.(*cluster.Cluster))
}

// WarningsOnCreate warns about valid but risky settings.
func (Strategy) WarningsOnCreate(_ context.Context, obj runtime.Object) []string {
	return validation.WarningsForCluster(obj.(*cluster.Cluster))
}

// Canonicalize leaves the object as it is.
func (Strategy) Canonicalize(runtime.Object) {}

// AllowCreateOnUpdate is false: a Cluster is created with POST only.
func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

// AllowUnconditionalUpdate lets a PUT without resourceVersion through, as kubectl replace sends.
func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

// ValidateUpdate checks an update of a Cluster.
func (Strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateClusterUpdate(obj.(*cluster.Cluster), old.(*cluster.Cluster))
}

// WarningsOnUpdate warns about valid but risky settings.
func (Strategy) WarningsOnUpdate(_ context.Context, obj, _ runtime.Object) []string {
	return validation.WarningsForCluster(obj.(*cluster.Cluster))
}

// StatusStrategy is the logic for the clusters/status subresource,
// which only switchboard's own health checks should write.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy for the clusters/status subresource.
func NewStatusStrategy(strategy Strategy) StatusStrategy {
	return StatusStrategy{strategy}
}

// GetResetFields says that writes to status never set spec.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"cluster.switchboard.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

// PrepareForUpdate keeps the stored spec.
func (StatusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	newCluster := obj.(*cluster.Cluster)
	oldCluster := old.(*cluster.Cluster)
	newCluster.Spec = oldCluster.Spec
}

// ValidateUpdate checks a status update.
func (StatusStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateClusterStatusUpdate(obj.(*cluster.Cluster), old.(*cluster.Cluster))
}

// WarningsOnUpdate has nothing to say about status writes.
func (StatusStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and fields of a Cluster for list and watch selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	c, ok := obj.(*cluster.Cluster)
	if !ok {
		return nil, nil, fmt.Errorf("not a Cluster: %T", obj)
	}
	return labels.Set(c.Labels), SelectableFields(c), nil
}

// SelectableFields are the fields a field selector may use: metadata.name.
func SelectableFields(c *cluster.Cluster) fields.Set {
	return generic.ObjectMetaFieldsSet(&c.ObjectMeta, false)
}

// MatchCluster returns a selection predicate for list and watch.
func MatchCluster(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{
		Label:    label,
		Field:    field,
		GetAttrs: GetAttrs,
	}
}
