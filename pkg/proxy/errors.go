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
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// retryAfterSeconds is what clients are told to wait when a retry soon is
// likely to succeed: switchboard's caches are still syncing at start-up, or
// a replica that is shutting down hands its watches over to another.
// client-go and kubectl retry a 5xx that carries Retry-After, up to ten
// times, so every other 503 here leaves it out: a member known to be down,
// one that hung up or cannot be dialled, or a broken credentials Secret
// would only make the caller wait about ten seconds for the same error.
const retryAfterSeconds = 1

// retryLater is a 503 Status naming the cluster, with Retry-After.
func retryLater(clusterName, message string) *apierrors.StatusError {
	err := reach.Unavailable(clusterName, message)
	err.ErrStatus.Details.RetryAfterSeconds = retryAfterSeconds
	return err
}

// errorResponder turns what goes wrong between switchboard and a member into
// Kubernetes Status errors that name the cluster.
type errorResponder struct {
	cluster  string
	endpoint string
	// path is the member path, for warnAbout.
	path      string
	responder rest.Responder
	// responded receives the code of the error, for the metrics.
	responded *atomic.Int32
}

func (r *errorResponder) Error(_ http.ResponseWriter, req *http.Request, err error) {
	status := r.status(req, err)
	if r.responded != nil {
		code := int32(http.StatusInternalServerError)
		if s, ok := status.(apierrors.APIStatus); ok {
			code = s.Status().Code
		}
		r.responded.Store(code)
	}
	warnAbout(req.Context(), r.path, status)
	r.responder.Error(status)
}

func (r *errorResponder) status(req *http.Request, err error) error {
	logger := klog.FromContext(req.Context())
	var status apierrors.APIStatus
	var idErr *reach.IdentityError
	var credErr *reach.CredentialsError
	var noAgent *reach.NoAgentError
	var refused *reach.PolicyError
	switch {
	case errors.As(err, &refused):
		recordPolicyRefusal(r.cluster)
		logger.V(2).Info("The identity policy refused a request", "cluster", klog.KRef("", r.cluster), "err", err)
		return apierrors.NewForbidden(cluster.Resource("clusters/proxy"), r.cluster, refused)
	case errors.As(err, &noAgent):
		RecordUpstreamError(r.cluster, string(reach.NoAgent))
		return reach.Unavailable(r.cluster, noAgent.Error())
	case errors.As(err, &idErr) && idErr.Unsendable:
		logger.Info("Refused to forward a request", "cluster", klog.KRef("", r.cluster), "err", err)
		return apierrors.NewForbidden(cluster.Resource("clusters/proxy"), r.cluster, idErr)
	case errors.As(err, &idErr):
		logger.Error(err, "Refused to forward a request", "cluster", klog.KRef("", r.cluster))
		return apierrors.NewInternalError(idErr)
	case errors.As(err, &credErr):
		RecordUpstreamError(r.cluster, "credentials")
		return reach.Unavailable(r.cluster, credErr.Error())
	case errors.As(err, &status):
		return err
	case strings.Contains(err.Error(), "invalid upgrade response"):
		RecordUpstreamError(r.cluster, "redirect")
		// The member answered an upgrade with neither 101 nor an error,
		// a redirect for instance; it is not passed on.
		return reach.BadGateway(r.cluster, fmt.Sprintf("cluster %q did not accept the upgrade: %v", r.cluster, err))
	case strings.Contains(err.Error(), "timeout awaiting response headers"):
		RecordUpstreamError(r.cluster, string(reach.Timeout))
		return reach.GatewayTimeout(r.cluster, fmt.Sprintf("cluster %q at %s accepted the request and did not begin its answer within switchboard's --request-timeout", r.cluster, r.endpoint))
	case badAnswer(err):
		RecordUpstreamError(r.cluster, string(reach.Other))
		return reach.BadGateway(r.cluster, fmt.Sprintf("cluster %q at %s sent an answer that is not valid HTTP: %s", r.cluster, r.endpoint, brief(err)))
	case reach.Classify(err) == reach.Reset:
		RecordUpstreamError(r.cluster, string(reach.Reset))
		return reach.Unavailable(r.cluster, fmt.Sprintf("cluster %q closed the connection at %s: %s", r.cluster, r.endpoint, brief(err)))
	case req.Context().Err() != nil:
		// The caller went away or its request timed out; nobody reads this.
		return apierrors.NewTimeoutError(fmt.Sprintf("request to cluster %q ended: %v", r.cluster, req.Context().Err()), 0)
	default:
		logger.V(2).Info("Member unreachable", "cluster", klog.KRef("", r.cluster), "err", err)
		failure := reach.Classify(err)
		RecordUpstreamError(r.cluster, string(failure))
		return reach.Unavailable(r.cluster, fmt.Sprintf("cluster %q is unreachable at %s: %s: %s", r.cluster, r.endpoint, failure.Hint(), brief(err)))
	}
}

// maxErrorInMessage bounds how much of an error goes into a Status: the
// transport's errors quote what the member sent, which may be megabytes.
const maxErrorInMessage = 256

// brief is err's text, cut to maxErrorInMessage bytes.
func brief(err error) string {
	msg := err.Error()
	if len(msg) <= maxErrorInMessage {
		return msg
	}
	return strings.ToValidUTF8(msg[:maxErrorInMessage], "") + "... (cut)"
}

// badAnswer says whether err is the transport's refusal of what a member
// answered: no HTTP at all, a header block over its limit, or a protocol
// switch nobody asked for, over HTTP/1.1 or HTTP/2.
func badAnswer(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "malformed HTTP") ||
		strings.Contains(msg, "server response headers exceeded") ||
		strings.Contains(msg, "tried to switch protocol") ||
		// HTTP/2, which kube-apiservers speak: what the client found wrong
		// in the member's frames (a header list over its limit, for one).
		strings.Contains(msg, "connection error: PROTOCOL_ERROR") ||
		strings.Contains(msg, "malformed response from server")
}

// MemberError is the Status for err, which a request to the member named
// clusterName at endpoint got instead of an answer: the same Status that
// clusters/<name>/proxy answers with, for callers that make their own
// requests to members (the fleet endpoint).
func MemberError(req *http.Request, clusterName, endpoint string, err error) error {
	return (&errorResponder{cluster: clusterName, endpoint: endpoint}).status(req, err)
}
