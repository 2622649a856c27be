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

package health

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// probeOnce probes cl with secret over a fresh TransportCache, as the
// controller does.
func probeOnce(t *testing.T, cl *v1alpha1.Cluster, secret *corev1.Secret, timeout time.Duration) Result {
	t.Helper()
	client, endpoint, err := reach.NewTransportCache(reach.Config{DialTimeout: testDialTimeout}).ProbeClient(cl, secret)
	if err != nil {
		t.Fatalf("ProbeClient: %v", err)
	}
	done := make(chan Result, 1)
	go func() { done <- probe(context.Background(), client, endpoint, timeout) }()
	select {
	case r := <-done:
		return r
	case <-time.After(timeout + 4*testDialTimeout + 10*time.Second):
		t.Fatalf("probe did not return (timeout %s)", timeout)
		return Result{}
	}
}

func checkResult(t *testing.T, r Result, ready metav1.ConditionStatus, readyReason string, creds metav1.ConditionStatus, credsReason string, down bool) {
	t.Helper()
	if r.Ready != ready || r.ReadyReason != readyReason {
		t.Errorf("Ready = %s/%s, want %s/%s (message %q)", r.Ready, r.ReadyReason, ready, readyReason, r.Message)
	}
	if r.CredentialsValid != creds || r.CredentialsReason != credsReason {
		t.Errorf("CredentialsValid = %s/%s, want %s/%s (message %q)", r.CredentialsValid, r.CredentialsReason, creds, credsReason, r.Message)
	}
	if got := r.Down(); got != down {
		t.Errorf("Down() = %v, want %v (reason %s)", got, down, r.ReadyReason)
	}
	if r.Message == "" {
		t.Error("the result has no message")
	}
	if strings.Contains(r.Message, testToken) {
		t.Errorf("the message %q contains switchboard's token", r.Message)
	}
	if r.Time.IsZero() || time.Since(r.Time) > time.Minute || time.Until(r.Time) > 0 {
		t.Errorf("Time = %v, want about now", r.Time)
	}
}

func TestProbeHealthyMember(t *testing.T) {
	m := newMember(t, nil)
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionTrue, v1alpha1.ReasonProbed, metav1.ConditionTrue, v1alpha1.ReasonProbed, false)
	if r.Version != memberVersion {
		t.Errorf("Version = %q, want %q", r.Version, memberVersion)
	}
	if r.Latency <= 0 {
		t.Errorf("Latency = %v, want > 0", r.Latency)
	}
	seen := m.requests()
	checkProbeHeaders(t, seen)
	var paths []string
	for _, s := range seen {
		paths = append(paths, s.Method+" "+s.Path)
	}
	if got := strings.Join(paths, ","); got != "GET /readyz,GET /version" {
		t.Errorf("the member received %s, want GET /readyz,GET /version", got)
	}
}

func TestProbeEndpointPathPrefix(t *testing.T) {
	m := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/gw/m1")
		answerHealthy(w, r)
	})
	r := probeOnce(t, newCluster("m1", m.url()+"/gw/m1/"), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionTrue, v1alpha1.ReasonProbed, metav1.ConditionTrue, v1alpha1.ReasonProbed, false)
	for _, s := range m.requests() {
		if !strings.HasPrefix(s.Path, "/gw/m1/") || strings.Contains(s.Path, "//") {
			t.Errorf("path at the member = %q, want under /gw/m1/", s.Path)
		}
	}
}

func TestProbeNotReadyMember(t *testing.T) {
	m := newMember(t, answerNotReady)
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonNotReady, metav1.ConditionTrue, v1alpha1.ReasonProbed, false)
	if !strings.Contains(r.Message, "500") || !strings.Contains(r.Message, "[-]etcd failed: reason withheld") {
		t.Errorf("message %q does not contain the code and the body's first line", r.Message)
	}
	if strings.Contains(r.Message, "[+]ping ok") {
		t.Errorf("message %q holds more than the body's first line", r.Message)
	}
	// The member still answers /version.
	if r.Version != memberVersion {
		t.Errorf("Version = %q, want %q", r.Version, memberVersion)
	}
	checkProbeHeaders(t, m.requests())
}

func TestProbeLongBodyIsCut(t *testing.T) {
	long := strings.Repeat("x", 500)
	m := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(long))
	})
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonNotReady, metav1.ConditionTrue, v1alpha1.ReasonProbed, false)
	if !strings.Contains(r.Message, strings.Repeat("x", 200)+"...") || strings.Contains(r.Message, strings.Repeat("x", 201)) {
		t.Errorf("message %q does not cut the body at 200 characters", r.Message)
	}
	if r.Version != "" {
		t.Errorf("Version = %q from a member whose /version fails", r.Version)
	}
}

func TestProbeUnauthorized(t *testing.T) {
	m := newMember(t, answerUnauthorized)
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized, false)
	if !strings.Contains(r.Message, "401") {
		t.Errorf("message %q does not mention 401", r.Message)
	}
	if r.Version != "" {
		t.Errorf("Version = %q after a 401", r.Version)
	}
	seen := m.requests()
	checkProbeHeaders(t, seen)
	if len(seen) != 1 {
		t.Errorf("the member received %d requests after a 401 on /readyz, want 1", len(seen))
	}
}

func TestProbeClosedPort(t *testing.T) {
	m := newMember(t, nil) // only for its CA
	r := probeOnce(t, newCluster("m1", closedEndpoint(t)), tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonUnreachable, metav1.ConditionUnknown, v1alpha1.ReasonUnreachable, true)
	if !strings.Contains(r.Message, "cannot be reached") || !strings.Contains(r.Message, "refused") {
		t.Errorf("message %q does not say the connection was refused", r.Message)
	}
}

func TestProbeWrongCA(t *testing.T) {
	m := newMember(t, nil)
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", otherCAPEM(t)), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonTLSError, metav1.ConditionUnknown, v1alpha1.ReasonTLSError, true)
	if !strings.Contains(r.Message, "certificate") {
		t.Errorf("message %q does not mention the certificate", r.Message)
	}
	if n := len(m.requests()); n != 0 {
		t.Errorf("the member received %d requests over an unverified connection", n)
	}
}

func TestProbeWrongServerName(t *testing.T) {
	m := newMember(t, nil)
	cl := newCluster("m1", m.url())
	cl.Spec.TLSServerName = "not-the-member.invalid"
	r := probeOnce(t, cl, tokenSecret("m1", m.caPEM()), testTimeout)

	checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonTLSError, metav1.ConditionUnknown, v1alpha1.ReasonTLSError, true)
}

func TestProbeMemberThatNeverAnswers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	t.Run("handler that hangs", func(t *testing.T) {
		m := newMember(t, func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		})
		r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), timeout)

		checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonUnreachable, metav1.ConditionUnknown, v1alpha1.ReasonUnreachable, true)
		if !strings.Contains(r.Message, "did not answer in time") {
			t.Errorf("message %q does not say the member did not answer in time", r.Message)
		}
	})
	t.Run("listener that never speaks TLS", func(t *testing.T) {
		m := newMember(t, nil) // only for its CA
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn, 16)
		t.Cleanup(func() {
			_ = ln.Close()
			for {
				select {
				case conn := <-accepted:
					_ = conn.Close()
				default:
					return
				}
			}
		})
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case accepted <- conn:
				default:
					_ = conn.Close()
				}
			}
		}()
		r := probeOnce(t, newCluster("m1", "https://"+ln.Addr().String()), tokenSecret("m1", m.caPEM()), timeout)

		checkResult(t, r, metav1.ConditionFalse, v1alpha1.ReasonUnreachable, metav1.ConditionUnknown, v1alpha1.ReasonUnreachable, true)
	})
}

func TestProbeRedirectIsNotFollowed(t *testing.T) {
	m := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example.com/readyz", http.StatusFound)
	})
	r := probeOnce(t, newCluster("m1", m.url()), tokenSecret("m1", m.caPEM()), testTimeout)

	if r.Ready != metav1.ConditionFalse || r.ReadyReason != v1alpha1.ReasonNotReady {
		t.Errorf("Ready = %s/%s, want False/NotReady (message %q)", r.Ready, r.ReadyReason, r.Message)
	}
	if len(m.requests()) == 0 {
		t.Error("the member received nothing")
	}
}

func TestResultDown(t *testing.T) {
	for reason, want := range map[string]bool{
		v1alpha1.ReasonProbed:             false,
		v1alpha1.ReasonNotReady:           false,
		v1alpha1.ReasonUnreachable:        true,
		v1alpha1.ReasonTLSError:           true,
		v1alpha1.ReasonUnauthorized:       false,
		v1alpha1.ReasonCredentialsMissing: false,
		v1alpha1.ReasonProbing:            false,
		"":                                false,
	} {
		r := Result{ReadyReason: reason}
		if got := r.Down(); got != want {
			t.Errorf("Down() with reason %q = %v, want %v", reason, got, want)
		}
	}
}
