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
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
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

// credentialsError means a Cluster's credentials Secret is missing or unusable.
type credentialsError struct {
	cluster string
	secret  string
	reason  string
}

func (e *credentialsError) Error() string {
	return fmt.Sprintf("cluster %q cannot be reached: its credentials Secret %s %s", e.cluster, e.secret, e.reason)
}

// serviceUnavailable is a 503 Status naming the cluster, without
// Retry-After, so that clients fail at once with its message (see
// retryAfterSeconds).
func serviceUnavailable(clusterName, message string) *apierrors.StatusError {
	err := retryLater(clusterName, message)
	err.ErrStatus.Details.RetryAfterSeconds = 0
	return err
}

// retryLater is a 503 Status naming the cluster, with Retry-After.
func retryLater(clusterName, message string) *apierrors.StatusError {
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
		if s, ok := status.(apierrors.APIStatus); ok { //nolint:errorlint // as the generic handlers read it.
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
		upstreamError(r.cluster, "credentials")
		return serviceUnavailable(r.cluster, credErr.Error())
	case errors.As(err, &status):
		return err
	case strings.Contains(err.Error(), "invalid upgrade response"):
		upstreamError(r.cluster, "redirect")
		// The member answered an upgrade with neither 101 nor an error,
		// a redirect for instance; it is not passed on.
		return badGateway(r.cluster, fmt.Sprintf("cluster %q did not accept the upgrade: %v", r.cluster, err))
	case utilnet.IsConnectionReset(err) || errors.Is(err, io.ErrUnexpectedEOF):
		upstreamError(r.cluster, "reset")
		return serviceUnavailable(r.cluster, fmt.Sprintf("cluster %q closed the connection at %s: %v", r.cluster, r.endpoint, err))
	case req.Context().Err() != nil:
		// The caller went away or its request timed out; nobody reads this.
		return apierrors.NewTimeoutError(fmt.Sprintf("request to cluster %q ended: %v", r.cluster, req.Context().Err()), 0)
	default:
		logger.V(2).Info("Member unreachable", "cluster", klog.KRef("", r.cluster), "err", err)
		failure := reach.Classify(err)
		upstreamError(r.cluster, string(failure))
		return serviceUnavailable(r.cluster, fmt.Sprintf("cluster %q is unreachable at %s: %s: %v", r.cluster, r.endpoint, failure.Hint(), err))
	}
}

// redirectBlocker turns any redirect a member answers with into a 502
// Status: switchboard never follows a member's redirect or passes it on,
// because the caller's client would follow it with the caller's own
// credentials.
type redirectBlocker struct {
	cluster string
	// prefix is the endpoint's path, before the member path.
	prefix   string
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &redirectBlocker{}

func (b *redirectBlocker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.delegate.RoundTrip(req)
	if err != nil || !isRedirect(resp) {
		return resp, err
	}
	_ = resp.Body.Close()
	upstreamError(b.cluster, "redirect")
	return statusResponse(req, resp, badGateway(b.cluster, fmt.Sprintf(
		"cluster %q answered with a redirect (%d); switchboard never follows or passes on a member's redirect", b.cluster, resp.StatusCode)).ErrStatus,
		needsWarning(strings.TrimPrefix(req.URL.Path, b.prefix))), nil
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

// credentialGuard turns a member's 401 into a 503 Status naming the cluster:
// the caller's credentials never reach the member, so a 401 can only mean
// the member rejected switchboard's own credential, and passing it on would
// tell the caller that theirs are wrong.
type credentialGuard struct {
	cluster string
	// prefix is the endpoint's path, before the member path.
	prefix   string
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &credentialGuard{}

func (g *credentialGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.delegate.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	_ = resp.Body.Close()
	upstreamError(g.cluster, "unauthorized")
	return statusResponse(req, resp, credentialRejected(g.cluster).ErrStatus, needsWarning(strings.TrimPrefix(req.URL.Path, g.prefix))), nil
}

func credentialRejected(clusterName string) *apierrors.StatusError {
	return serviceUnavailable(clusterName, fmt.Sprintf(
		"cluster %q rejected switchboard's credential (401 Unauthorized); join it again to renew the credential", clusterName))
}

// upgradeCredentialGuard is credentialGuard for upgrades (exec, attach,
// port-forward): the upgrade-aware handler copies a member's refusal of an
// upgrade straight to the hijacked connection, so a 401 is replaced there.
type upgradeCredentialGuard struct {
	http.ResponseWriter
	cluster string
	req     *http.Request
}

func (g *upgradeCredentialGuard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(g.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &credentialGuardConn{Conn: conn, cluster: g.cluster, req: g.req}, rw, nil
}

func (g *upgradeCredentialGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// credentialGuardConn passes everything written to it on, unless the
// status line written first says 401: then it writes a 503 Status in its
// place and drops the member's answer.
type credentialGuardConn struct {
	net.Conn
	cluster string
	req     *http.Request

	mu       sync.Mutex
	head     []byte
	decided  bool
	replaced bool
}

func (c *credentialGuardConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.replaced:
		return len(p), nil
	case c.decided:
		return c.Conn.Write(p)
	}
	c.head = append(c.head, p...)
	line, _, complete := bytes.Cut(c.head, []byte("\r\n"))
	if !complete && len(c.head) < 4096 {
		return len(p), nil
	}
	c.decided = true
	head := c.head
	c.head = nil
	if fields := strings.Fields(string(line)); len(fields) < 2 || fields[1] != "401" {
		if _, err := c.Conn.Write(head); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.replaced = true
	upstreamError(c.cluster, "unauthorized")
	// Upgrades (exec, attach, port-forward) are resource requests, whose
	// clients read the Status: no warning.
	resp := statusResponse(c.req, &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, credentialRejected(c.cluster).ErrStatus, false)
	resp.Close = true
	if err := resp.Write(c.Conn); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (g *credentialGuard) WrappedRoundTripper() http.RoundTripper { return g.delegate }

// statusResponse is a response carrying a Status, in place of resp; with
// warn, its message also goes out as a Warning header (see needsWarning).
func statusResponse(req *http.Request, resp *http.Response, status metav1.Status, warn bool) *http.Response {
	status.Kind, status.APIVersion = "Status", "v1"
	body, _ := json.Marshal(status)
	header := http.Header{"Content-Type": []string{"application/json"}}
	if status.Details != nil && status.Details.RetryAfterSeconds > 0 {
		header.Set("Retry-After", fmt.Sprint(status.Details.RetryAfterSeconds))
	}
	if warn {
		if w := warningHeader(status.Message); w != "" {
			header.Set("Warning", w)
		}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status.Code, http.StatusText(int(status.Code))),
		StatusCode:    int(status.Code),
		Proto:         resp.Proto,
		ProtoMajor:    resp.ProtoMajor,
		ProtoMinor:    resp.ProtoMinor,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
