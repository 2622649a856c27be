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

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/test/topology"
)

// hubAway is how long the hub's kube-apiserver stays stopped.
const hubAway = 60 * time.Second

// hubRefusal is what switchboard says when it cannot ask the hub's
// SubjectAccessReview API.
const hubRefusal = `switchboard could not ask the hub whether to allow this request (SubjectAccessReview: the hub refused the connection), and refuses what it cannot ask about`

// TestHubGoesAway stops the hub's kube-apiserver for 60 s and starts it
// again. Requests reach switchboard straight, as the aggregator of another
// hub API server would send them, while the hub is away. switchboard must
// stay up, answer from the decisions the hub made lately and then refuse
// with a 403 that says the hub could not be asked (never a 500), say on
// /readyz that the hub is what is wrong, and afterwards work with no
// restart: its informers of the hub resume, and it writes Cluster status
// again.
func TestHubGoesAway(t *testing.T) {
	ctx := context.Background()
	s := f.State
	before := switchboardProcess(t)
	client, err := s.FrontProxyClient()
	if err != nil {
		t.Fatal(err)
	}
	// The hub's administrators (system:masters) are allowed without a
	// SubjectAccessReview; this user is allowed by the hub's RBAC.
	const reader = "hub-away-reader"
	f.Grant(t, reader, rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"clusters/proxy"}, Verbs: []string{"get"}})
	try := func(user, path string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Switchboard.URL+path, nil)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("X-Remote-User", user)
		req.Header.Set("X-Remote-Group", "system:authenticated")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	as := func(user, path string) (int, string) {
		code, body, err := try(user, path)
		if err != nil {
			// switchboard itself must always answer.
			t.Fatalf("GET %s straight from switchboard: %v", path, err)
		}
		return code, body
	}
	direct := func(path string) (int, string) {
		code, body, err := topology.FrontProxyGet(ctx, client, s.Switchboard.URL+path)
		if err != nil {
			t.Fatalf("GET %s straight from switchboard: %v", path, err)
		}
		return code, body
	}
	cached := proxyPrefix + "member1/proxy/version"
	if code, body := direct("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the hub went away: %d %s", code, body)
	}
	eventually(t, time.Minute, func() error {
		if code, body := as(reader, cached); code != http.StatusOK {
			return fmt.Errorf("GET %s as %s before the hub went away: %d %s", cached, reader, code, body)
		}
		return nil
	})

	// While the hub shuts down, the same request again and again: the
	// last decision it made is as recent as can be.
	var lastAllowed atomic.Int64
	priming := make(chan struct{})
	primed := make(chan struct{})
	go func() {
		defer close(primed)
		for {
			select {
			case <-priming:
				return
			case <-time.After(250 * time.Millisecond):
			}
			// Off the test's goroutine: errors are the loop's below.
			if code, _, err := try(reader, cached); err == nil && code == http.StatusOK {
				lastAllowed.Store(time.Now().UnixNano())
			}
		}
	}()
	// Cleanups run last first: the hub is started again, then waited for,
	// then the grant goes.
	t.Cleanup(func() {
		eventually(t, 2*time.Minute, func() error {
			_, err := f.Hub(t).Discovery().ServerVersion()
			return err
		})
		eventually(t, 2*time.Minute, func() error { return s.APIServiceAvailable(ctx) })
	})
	stopping := time.Now()
	restart := stopProcess(t, "hub-kube-apiserver")
	close(priming)
	<-primed
	stopped := time.Now()
	t.Logf("the hub's kube-apiserver took %s to stop", stopped.Sub(stopping).Round(time.Millisecond))

	// Every answer while the hub is away is one of these.
	counts := map[string]int{}
	classify := func(what string, code int, body string) string {
		switch {
		case code == http.StatusOK:
			return "200"
		case code == http.StatusForbidden && strings.Contains(body, hubRefusal):
			return "403 naming the hub"
		default:
			t.Errorf("%s with the hub away: %d %.300s", what, code, body)
			return fmt.Sprint(code)
		}
	}
	code, body := as(reader, cached)
	allowed := time.Unix(0, lastAllowed.Load())
	first := classify("the request the hub allowed last", code, body)
	// A decision is kept for the cache's TTL from when the hub made it,
	// not from its last use.
	t.Logf("the last 200 to that request came %s before the hub's process was gone (from the hub, or its decision from the cache); the first request after: %s",
		stopped.Sub(allowed).Round(time.Millisecond), first)

	// A request nobody asked the hub about is refused, saying why.
	never := proxyPrefix + fmt.Sprintf("never-asked-%d/proxy/version", time.Now().UnixNano())
	code, body = as(reader, never)
	if classify("a request nobody asked about", code, body) != "403 naming the hub" {
		t.Errorf("a request nobody asked about: %d %s", code, body)
	}
	var status metav1.Status
	if err := json.Unmarshal([]byte(body), &status); err != nil || status.Reason != metav1.StatusReasonForbidden {
		t.Errorf("the refusal is no Forbidden Status: %v %s", err, body)
	}

	readyzFailed, refusedCached := time.Time{}, time.Time{}
	for time.Since(stopped) < hubAway {
		code, body := direct("/readyz?verbose")
		switch {
		case code == http.StatusOK:
		case strings.Contains(body, "[-]hub failed") && !strings.Contains(body, "[-]etcd") && !strings.Contains(body, "[-]switchboard-proxy-caches"):
			if readyzFailed.IsZero() {
				readyzFailed = time.Now()
			}
		default:
			t.Errorf("/readyz with the hub away: %d %s", code, body)
		}
		if code, body := direct("/livez"); code != http.StatusOK {
			t.Errorf("/livez with the hub away: %d %s", code, body)
		}
		// The Deployment's readinessProbe.
		if code, body := direct("/readyz?exclude=hub"); code != http.StatusOK {
			t.Errorf("/readyz?exclude=hub with the hub away: %d %s", code, body)
		}
		code, body = as(reader, cached)
		counts[classify("the request the hub allowed last", code, body)]++
		if code != http.StatusOK && refusedCached.IsZero() {
			refusedCached = time.Now()
		}
		time.Sleep(time.Second)
	}
	if readyzFailed.IsZero() {
		t.Error("/readyz never said the hub is away")
	} else {
		t.Logf("/readyz said [-]hub %s after the hub stopped", readyzFailed.Sub(stopped).Round(time.Millisecond))
	}
	if refusedCached.IsZero() {
		t.Error("the decision the hub made was still used 60 s later")
	} else {
		t.Logf("that request was refused from %s after its last 200 on", refusedCached.Sub(allowed).Round(time.Millisecond))
	}
	t.Logf("answers to that request over %s with the hub away: %v", hubAway, counts)
	if after := switchboardProcess(t); after.PID != before.PID || after.StartTime != before.StartTime || !after.Alive() {
		t.Errorf("switchboard restarted or stopped while the hub was away: pid %d, then %d (alive %v)", before.PID, after.PID, after.Alive())
	}

	restart()
	back := time.Now()
	eventually(t, 2*time.Minute, func() error {
		if code, body := direct("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz after the hub came back: %d %s", code, body)
		}
		return nil
	})
	t.Logf("/readyz passed %s after the hub started again", time.Since(back).Round(time.Millisecond))
	hub := f.HubConfig(t)
	eventually(t, 2*time.Minute, func() error {
		if code, body, err := rawRequest(hub, http.MethodGet, cached, nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("GET %s through the hub: %s", cached, describe(code, body, err))
		}
		return nil
	})
	t.Logf("requests through the hub worked %s after it started again", time.Since(back).Round(time.Millisecond))

	t.Run("it writes Cluster status again", func(t *testing.T) {
		for _, m := range s.Members {
			eventually(t, healthWait+time.Minute, func() error {
				c, err := f.Switchboard(t).ClusterV1alpha1().Clusters().Get(ctx, m.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
				if c.Status.LastProbeTime == nil || !c.Status.LastProbeTime.After(back) || ready == nil || ready.Status != metav1.ConditionTrue {
					return fmt.Errorf("%s: last probe %v, Ready %+v; want a Ready probe after %s", m.Name, c.Status.LastProbeTime, ready, back.UTC().Format(time.RFC3339))
				}
				return nil
			})
		}
		lost, won := leaderTerms(t, before.Log, stopping)
		t.Logf("since the hub stopped, switchboard's log says it stopped writing Cluster status %d time(s) and began %d time(s)", lost, won)
		if won < lost {
			t.Errorf("it stopped writing Cluster status %d times and began again %d times", lost, won)
		}
	})

	t.Run("its informers of the hub resumed", func(t *testing.T) {
		// A Secret changed on the hub after its return is seen: a broken
		// token shows as the member's refusal, and join's repair works.
		secrets := f.Hub(t).CoreV1().Secrets(join.DefaultHubNamespace)
		secret, err := secrets.Get(ctx, join.SecretName("member2"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[v1alpha1.SecretKeyToken] = []byte("not-a-valid-token")
		if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		broken := time.Now()
		repaired := false
		t.Cleanup(func() {
			if !repaired {
				mustPlugin(t, "join", "member2", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member2"))
			}
		})
		// client-go's reflectors back off while the hub is away, up to
		// 30 s with as much jitter again, before they list once more.
		eventually(t, 2*time.Minute, func() error {
			code, body, err := rawRequest(hub, http.MethodGet, proxyPrefix+"member2/proxy/version", nil)
			if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, `rejected switchboard's credential`) {
				return fmt.Errorf("member2 with a broken token on the hub: %s", describe(code, body, err))
			}
			return nil
		})
		t.Logf("switchboard used the Secret changed %s after the hub came back %s after the change", broken.Sub(back).Round(time.Millisecond), time.Since(broken).Round(time.Millisecond))
		out := mustPlugin(t, "join", "member2", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member2"))
		repaired = true
		if !strings.Contains(out, "corrected Secret switchboard-system/member2-credentials") {
			t.Errorf("join after the token was broken:\n%s", out)
		}
		if code, body := rawThroughHub(t, proxyPrefix+"member2/proxy/version"); code != http.StatusOK {
			t.Errorf("member2 after join repaired its token: %d %s", code, body)
		}
	})

	if after := switchboardProcess(t); after.PID != before.PID || after.StartTime != before.StartTime || !after.Alive() {
		t.Errorf("switchboard restarted: pid %d, then %d (alive %v)", before.PID, after.PID, after.Alive())
	}
}

// switchboardProcess is the topology's switchboard-apiserver, as recorded now.
func switchboardProcess(t *testing.T) *topology.Process {
	t.Helper()
	s, err := loadState()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		if p.Name == names.Server {
			return p
		}
	}
	t.Fatalf("no %s process in the topology", names.Server)
	return nil
}

// leaderTerms counts the times switchboard's log says, after since, that
// it stopped and began writing Cluster status.
func leaderTerms(t *testing.T, log string, since time.Time) (lost, won int) {
	t.Helper()
	file, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = file.Close() }()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	year := time.Now().UTC().Year()
	for scanner.Scan() {
		m := haLeaderLine.FindStringSubmatch(scanner.Text())
		if m == nil {
			continue
		}
		at, err := time.ParseInLocation("2006 0102 15:04:05.000000", fmt.Sprint(year)+" "+m[1], time.UTC)
		if err != nil || at.Before(since) {
			continue
		}
		if strings.HasPrefix(m[2], "writes") {
			won++
		} else {
			lost++
		}
	}
	return lost, won
}
