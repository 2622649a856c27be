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
	"fmt"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
)

// All is the fleet name for every member: fleets/*/proxy.
const All = "*"

// ParseSelector reads the name in fleets/<name>/proxy: All, or a label
// selector on Clusters, as kubectl -l takes it (env=prod,tier!=db). A
// label key's "/" is written %2F within the name, since a "/" would end
// the path segment; on the wire that is %252F (kubeconfig.FleetPath writes
// it). A bad selector is a 400.
func ParseSelector(name string) (labels.Selector, error) {
	if name == All {
		return labels.Everything(), nil
	}
	text, err := url.PathUnescape(name)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("fleet %q: %v; the fleet name is %q for every member, or a label selector on Clusters such as env=prod", name, err, All))
	}
	if strings.TrimSpace(text) == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("fleet %q: the selector is empty; the fleet name is %q for every member, or a label selector on Clusters such as env=prod", name, All))
	}
	selector, err := labels.Parse(text)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("fleet %q is not a label selector: %v; the fleet name is %q for every member, or a label selector on Clusters such as env=prod", name, err, All))
	}
	return selector, nil
}
