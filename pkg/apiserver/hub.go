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

package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/rest"
)

// maxHubMessage bounds how much of the hub's own message a refusal quotes.
const maxHubMessage = 256

// hubCheckTimeout bounds the /readyz check of the hub, well inside a
// kubelet's default probe timeout.
const hubCheckTimeout = 800 * time.Millisecond

// hubCheckInterval is how often, at most, the /readyz check asks the hub:
// however often /readyz is called, by anyone who can reach the port.
const hubCheckInterval = time.Second

// HubReadyzCheck reports on /readyz, as "hub", whether the hub's API
// server answers: switchboard asks it to authorize every request, and reads
// credentials from it. /livez leaves it out: restarting switchboard does
// not bring the hub back. The Deployment's readinessProbe leaves it out
// too (/readyz?exclude=hub): every replica would fail it at once, and
// none would then serve what it still can (decisions the hub made lately,
// system:masters).
func HubReadyzCheck(hub rest.Interface) healthz.HealthChecker {
	c := &hubCheck{hub: hub}
	return healthz.NamedCheck("hub", c.check)
}

type hubCheck struct {
	hub rest.Interface

	mu      sync.Mutex
	checked time.Time
	err     error
}

// check asks the hub at most once per hubCheckInterval, and otherwise
// answers what it saw last.
func (c *hubCheck) check(*http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.checked.IsZero() && time.Since(c.checked) < hubCheckInterval {
		return c.err
	}
	// Not the caller's context: a caller that leaves must not make the
	// answer other callers get for the next second a failure.
	ctx, cancel := context.WithTimeout(context.Background(), hubCheckTimeout)
	defer cancel()
	c.err = nil
	if err := c.hub.Get().AbsPath("/version").MaxRetries(0).Do(ctx).Error(); err != nil {
		c.err = fmt.Errorf("the hub's API server does not answer GET /version: %w", err)
	}
	c.checked = time.Now()
	return c.err
}

// FailClosed wraps the authorizer of the handler chain: it refuses, with a
// reason that says why, a request the hub could not be asked about. The delegating authorizer of k8s.io/apiserver answers
// a failed SubjectAccessReview with an error, which the authorization filter
// turns into a 500 that holds the raw Go error of the call to the hub.
// Decisions the hub made recently still come from the delegating
// authorizer's cache (--authorization-webhook-cache-authorized-ttl and
// -unauthorized-ttl), so only requests nobody asked about lately are
// refused. The delegating authorizer makes no conditional decisions, and
// neither does this one.
func FailClosed(delegate authorizer.Authorizer) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
		decision, reason, err := delegate.Authorize(ctx, attrs)
		if err == nil || decision == authorizer.DecisionAllow {
			return decision, reason, err
		}
		// The webhook authorizer has logged err already.
		return authorizer.DecisionDeny, fmt.Sprintf(
			"switchboard could not ask the hub whether to allow this request (SubjectAccessReview: %s), "+
				"and refuses what it cannot ask about; it asks again on the next request", hubCause(err)), nil
	})
}

// hubCause says in a few words why a call to the hub failed, without the
// URL and dial details of the raw error, which switchboard's log has.
func hubCause(err error) string {
	// The union of authorizers joins its errors, in a type errors.As
	// does not look into.
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		if errs := utilerrors.Flatten(agg).Errors(); len(errs) > 0 {
			err = errs[0]
		}
	}
	var status apierrors.APIStatus
	var netErr net.Error
	switch {
	case errors.As(err, &status) && status.Status().Code != 0:
		s := status.Status()
		msg := s.Message
		if len(msg) > maxHubMessage {
			msg = strings.ToValidUTF8(msg[:maxHubMessage], "") + "... (cut)"
		}
		return fmt.Sprintf("the hub answered %d %s: %s", s.Code, http.StatusText(int(s.Code)), msg)
	case utilnet.IsConnectionRefused(err):
		return "the hub refused the connection"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return "the hub did not answer in time"
	case errors.Is(err, context.Canceled):
		return "the request ended first"
	default:
		return "the call to the hub failed; switchboard's log has the error"
	}
}
