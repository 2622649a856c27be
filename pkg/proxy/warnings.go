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

package proxy

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/warning"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// client-go reads discovery and the OpenAPI documents without decoding a
// Status, so on those member paths switchboard's own errors also go out as
// a Warning (see reach.NeedsWarning).

// warnAbout adds err's message as a warning of the request in ctx, when
// err is a Status and the request is to a member path that needs one.
func warnAbout(ctx context.Context, path string, err error) {
	status, ok := err.(apierrors.APIStatus)
	if !ok || !reach.NeedsWarning(path) {
		return
	}
	warning.AddWarning(ctx, "", reach.WarningText(status.Status().Message))
}
