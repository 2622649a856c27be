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

package identity

import (
	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// FromInternal is the policy of a Cluster as the server validates it.
func FromInternal(p *cluster.IdentityPolicy) *Policy {
	if p == nil {
		return nil
	}
	out := &Policy{Username: p.Username, UID: p.UID, Groups: p.Groups}
	for _, r := range p.Rules {
		out.Rules = append(out.Rules, Rule{Expression: r.Expression, Message: r.Message})
	}
	for _, x := range p.Extra {
		out.Extra = append(out.Extra, Extra{Key: x.Key, ValueExpression: x.ValueExpression})
	}
	return out
}

// FromV1alpha1 is the policy of a Cluster as switchboard's caches hold it.
func FromV1alpha1(p *v1alpha1.IdentityPolicy) *Policy {
	if p == nil {
		return nil
	}
	var internal cluster.IdentityPolicy
	// The generated conversion copies fields; it cannot fail.
	_ = v1alpha1.Convert_v1alpha1_IdentityPolicy_To_cluster_IdentityPolicy(p, &internal, nil)
	return FromInternal(&internal)
}
