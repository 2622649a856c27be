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

package reach

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
)

// Unavailable is a 503 Status naming the cluster, without Retry-After, so
// that clients fail at once with its message: client-go and kubectl retry
// a 5xx that carries Retry-After up to ten times, and a member that cannot
// be reached would only make the caller wait for the same error.
func Unavailable(clusterName, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusServiceUnavailable,
		Reason:  metav1.StatusReasonServiceUnavailable,
		Message: message,
		Details: &metav1.StatusDetails{Group: cluster.GroupName, Kind: "clusters", Name: clusterName},
	}}
}

// BadGateway is a 502 Status naming the cluster.
func BadGateway(clusterName, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusBadGateway,
		Message: message,
		Details: &metav1.StatusDetails{Group: cluster.GroupName, Kind: "clusters", Name: clusterName},
	}}
}

// GatewayTimeout is a 504 Status naming the cluster: the member took the
// request and did not answer in time.
func GatewayTimeout(clusterName, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusGatewayTimeout,
		Reason:  metav1.StatusReasonTimeout,
		Message: message,
		Details: &metav1.StatusDetails{Group: cluster.GroupName, Kind: "clusters", Name: clusterName},
	}}
}

// CredentialRejected is the 503 Status that replaces a member's 401.
func CredentialRejected(clusterName string) *apierrors.StatusError {
	return Unavailable(clusterName, fmt.Sprintf(
		"cluster %q rejected switchboard's credential (401 Unauthorized); join it again to renew the credential", clusterName))
}
