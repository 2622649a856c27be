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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
)

// retryAfterSeconds is what clients are told to wait when a member or its
// credentials are unavailable.
const retryAfterSeconds = 5

// credentialsError means a Cluster's credentials Secret is missing or unusable.
type credentialsError struct {
	cluster string
	secret  string
	reason  string
}

func (e *credentialsError) Error() string {
	return fmt.Sprintf("cluster %q cannot be reached: its credentials Secret %s %s", e.cluster, e.secret, e.reason)
}

// serviceUnavailable is a 503 Status naming the cluster, with Retry-After.
func serviceUnavailable(clusterName, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusServiceUnavailable,
		Reason:  metav1.StatusReasonServiceUnavailable,
		Message: message,
		Details: &metav1.StatusDetails{
			Group:             cluster.GroupName,
			Kind:              "clusters",
			Name:              clusterName,
			RetryAfterSeconds: retryAfterSeconds,
		},
	}}
}

// badGateway is a 502 Status naming the cluster.
func badGateway(clusterName, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusBadGateway,
		Message: message,
		Details: &metav1.StatusDetails{Group: cluster.GroupName, Kind: "clusters", Name: clusterName},
	}}
}

// errorResponder turns what goes wrong between switchboard and a member into
// Kubernetes Status errors that name the cluster.
type errorResponder struct {
	cluster   string
	endpoint  string
	responder rest.Responder
}

func (r *errorResponder) Error(_ http.ResponseWriter, req *http.Request, err error) {
	r.responder.Error(r.status(req, err))
}

func (r *errorResponder) status(req *http.Request, err error) error {
	logger := klog.FromContext(req.Context())
	var status apierrors.APIStatus
	var idErr *identityError
	var credErr *credentialsError
	switch {
	case errors.As(err, &idErr) && idErr.unsendable:
		logger.Info("Refused to forward a request", "cluster", klog.KRef("", r.cluster), "err", err)
		return apierrors.NewForbidden(cluster.Resource("clusters/proxy"), r.cluster, idErr)
	case errors.As(err, &idErr):
		logger.Error(err, "Refused to forward a request", "cluster", klog.KRef("", r.cluster))
		return apierrors.NewInternalError(idErr)
	case errors.As(err, &credErr):
		return serviceUnavailable(r.cluster, credErr.Error())
	case errors.As(err, &status):
		return err
	case strings.Contains(err.Error(), "invalid upgrade response"):
		// The member answered an upgrade with neither 101 nor an error,
		// a redirect for instance; it is not passed on.
		return badGateway(r.cluster, fmt.Sprintf("cluster %q did not accept the upgrade: %v", r.cluster, err))
	case utilnet.IsConnectionReset(err) || errors.Is(err, io.ErrUnexpectedEOF):
		return serviceUnavailable(r.cluster, fmt.Sprintf("cluster %q closed the connection at %s: %v", r.cluster, r.endpoint, err))
	case req.Context().Err() != nil:
		// The caller went away or its request timed out; nobody reads this.
		return apierrors.NewTimeoutError(fmt.Sprintf("request to cluster %q ended: %v", r.cluster, req.Context().Err()), 0)
	default:
		logger.V(2).Info("Member unreachable", "cluster", klog.KRef("", r.cluster), "err", err)
		return serviceUnavailable(r.cluster, fmt.Sprintf("cluster %q is unreachable at %s: %v", r.cluster, r.endpoint, err))
	}
}

// redirectBlocker turns any redirect a member answers with into a 502
// Status: switchboard never follows a member's redirect or passes it on,
// because the caller's client would follow it with the caller's own
// credentials.
type redirectBlocker struct {
	cluster  string
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &redirectBlocker{}

func (b *redirectBlocker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.delegate.RoundTrip(req)
	if err != nil || !isRedirect(resp) {
		return resp, err
	}
	_ = resp.Body.Close()
	status := badGateway(b.cluster, fmt.Sprintf(
		"cluster %q answered with a redirect (%d); switchboard never follows or passes on a member's redirect", b.cluster, resp.StatusCode)).ErrStatus
	status.Kind, status.APIVersion = "Status", "v1"
	body, _ := json.Marshal(status)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", http.StatusBadGateway, http.StatusText(http.StatusBadGateway)),
		StatusCode:    http.StatusBadGateway,
		Proto:         resp.Proto,
		ProtoMajor:    resp.ProtoMajor,
		ProtoMinor:    resp.ProtoMinor,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// isRedirect says whether a response sends the client elsewhere. 304 Not
// Modified, the answer to a conditional GET (kubectl's cached OpenAPI), is
// not a redirect and passes through.
func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	case http.StatusNotModified:
		return false
	}
	return resp.StatusCode >= 300 && resp.StatusCode <= 399 && resp.Header.Get("Location") != ""
}

func (b *redirectBlocker) WrappedRoundTripper() http.RoundTripper { return b.delegate }
