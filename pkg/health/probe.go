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

// Package health probes member clusters, keeps every replica's view of
// which members answer (the proxy fails fast on members known to be down),
// and, on the elected replica, writes it to the Clusters' status.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Result is what one probe of a member found.
type Result struct {
	Time time.Time
	// Duration is how long the probe took, answered or not.
	Duration time.Duration
	// Latency is how long the member took to answer; zero without an answer.
	Latency time.Duration
	// Ready and ReadyReason make the Ready condition.
	Ready       metav1.ConditionStatus
	ReadyReason string
	// CredentialsValid and CredentialsReason make the CredentialsValid condition.
	CredentialsValid  metav1.ConditionStatus
	CredentialsReason string
	// Message explains both conditions.
	Message string
	// Version is the member's gitVersion, when it answered /version.
	Version string
	// Agent and AgentMessage make the AgentConnected condition of a
	// tunnelled member; Agent is empty for the others.
	Agent        metav1.ConditionStatus
	AgentMessage string
}

// Down says whether the member could not be reached at all; the proxy
// refuses requests to such a member at once.
func (r *Result) Down() bool {
	return r.ReadyReason == v1alpha1.ReasonUnreachable || r.ReadyReason == v1alpha1.ReasonTLSError ||
		r.ReadyReason == v1alpha1.ReasonAgentDisconnected
}

// agentDisconnected is the result for a tunnelled member with no agent:
// nothing is probed, and whether the credential is valid is not known.
func agentDisconnected(now time.Time, err *reach.NoAgentError) Result {
	return Result{
		Time:              now,
		Ready:             metav1.ConditionFalse,
		ReadyReason:       v1alpha1.ReasonAgentDisconnected,
		CredentialsValid:  metav1.ConditionUnknown,
		CredentialsReason: v1alpha1.ReasonAgentDisconnected,
		Message:           err.Error(),
		Agent:             metav1.ConditionFalse,
		AgentMessage:      err.Error(),
	}
}

// credentialsMissing is the result for a Cluster whose Secret is unusable.
func credentialsMissing(now time.Time, message string) Result {
	return Result{
		Time:              now,
		Ready:             metav1.ConditionFalse,
		ReadyReason:       v1alpha1.ReasonCredentialsMissing,
		CredentialsValid:  metav1.ConditionFalse,
		CredentialsReason: v1alpha1.ReasonCredentialsMissing,
		Message:           message,
	}
}

// probe asks the member for /readyz and /version with switchboard's own
// credential, each bounded by timeout.
func probe(ctx context.Context, client *http.Client, endpoint *url.URL, timeout time.Duration) Result {
	start := time.Now()
	code, body, err := get(ctx, client, endpoint, "/readyz", timeout)
	r := Result{Time: start, Latency: time.Since(start)}
	r.Duration = r.Latency
	if err != nil {
		// No answer: nothing to learn about the member's latency.
		r.Latency = 0
		r.Ready, r.CredentialsValid = metav1.ConditionFalse, metav1.ConditionUnknown
		r.ReadyReason, r.Message = classify(err)
		r.CredentialsReason = r.ReadyReason
		return r
	}
	switch code {
	case http.StatusUnauthorized:
		r.Ready, r.ReadyReason = metav1.ConditionFalse, v1alpha1.ReasonUnauthorized
		r.CredentialsValid, r.CredentialsReason = metav1.ConditionFalse, v1alpha1.ReasonUnauthorized
		r.Message = "the member rejected switchboard's credential (401 Unauthorized); join the cluster again to renew it"
		r.Duration = r.Latency
		return r
	case http.StatusOK:
		r.Ready, r.ReadyReason = metav1.ConditionTrue, v1alpha1.ReasonProbed
		r.Message = "the member's /readyz passes"
	default:
		r.Ready, r.ReadyReason = metav1.ConditionFalse, v1alpha1.ReasonNotReady
		r.Message = fmt.Sprintf("the member's /readyz answered %d: %s", code, failingCheck(body))
	}
	// Anything but 401 means the member authenticated the credential.
	r.CredentialsValid, r.CredentialsReason = metav1.ConditionTrue, v1alpha1.ReasonProbed

	code, body, err = get(ctx, client, endpoint, "/version", timeout)
	if err == nil && code == http.StatusOK {
		var info version.Info
		if json.Unmarshal(body, &info) == nil {
			r.Version = info.GitVersion
		}
	}
	r.Latency = time.Since(start)
	r.Duration = r.Latency
	return r
}

func get(ctx context.Context, client *http.Client, endpoint *url.URL, path string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := *endpoint
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	return resp.StatusCode, body, err
}

// classify names why a member could not be reached, with reach.Classify
// as the proxy's metrics and kubectl switchboard join do.
func classify(err error) (reason, message string) {
	// The local address changes with every connection; left in, each probe
	// of a member that fails the same way would read as a change and be
	// written to status.
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		opErr.Source = nil
	}
	failure := reach.Classify(err)
	reason = v1alpha1.ReasonUnreachable
	switch failure {
	case reach.TLS:
		reason = v1alpha1.ReasonTLSError
	case reach.NoAgent:
		// The agent went away between the check and the probe.
		reason = v1alpha1.ReasonAgentDisconnected
	}
	return reason, "the member cannot be reached: " + failure.Hint() + ": " + err.Error()
}

// failingCheck picks the line of a /readyz answer that says what fails: the
// first "[-]" line of a verbose answer, or else the first line.
func failingCheck(body []byte) string {
	text := strings.TrimSpace(string(body))
	line, _, _ := strings.Cut(text, "\n")
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "[-]") {
			line = l
			break
		}
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	return line
}
