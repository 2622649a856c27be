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
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/join"
)

// memberLoad sends requests to one member through the hub from several
// workers, a GET and a short watch in turn, and sorts every answer.
type memberLoad struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	answers []loadAnswer
}

type loadAnswer struct {
	start, end time.Time
	kind       string // "ok", "credential" or "other"
	what       string
}

func startMemberLoad(t *testing.T, config *rest.Config, cluster string, workers int) *memberLoad {
	l := &memberLoad{done: make(chan struct{})}
	paths := []string{
		proxyPrefix + cluster + "/proxy/api/v1/namespaces/default",
		proxyPrefix + cluster + "/proxy/api/v1/namespaces?watch=true&timeoutSeconds=1",
	}
	for w := range workers {
		l.wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-l.done:
					return
				case <-time.After(50 * time.Millisecond):
				}
				path := paths[i%len(paths)]
				start := time.Now()
				code, body, err := rawRequest(config, http.MethodGet, path, nil)
				a := loadAnswer{start: start, end: time.Now(), kind: "other", what: "GET " + path + ": " + describe(code, body, err)}
				switch {
				case err == nil && code == http.StatusOK:
					a.kind = "ok"
				case err == nil && code == http.StatusServiceUnavailable &&
					strings.Contains(body, fmt.Sprintf(`cluster \"%s\" rejected switchboard's credential (401 Unauthorized); join it again to renew the credential`, cluster)):
					a.kind = "credential"
				}
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *memberLoad) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// count is how many answers of kind came to requests sent at or after since.
func (l *memberLoad) count(kind string, since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if a.kind == kind && !a.start.Before(since) {
			n++
		}
	}
	return n
}

func (l *memberLoad) snapshot() []loadAnswer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loadAnswer(nil), l.answers...)
}

// waitFor waits until n answers of kind came to requests sent after since.
func (l *memberLoad) waitFor(t *testing.T, kind string, n int, since time.Time, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		if got := l.count(kind, since); got < n {
			return fmt.Errorf("%d answers %q, want %d", got, kind, n)
		}
		return nil
	})
}

// TestImpersonatorTokenRevokedUnderLoad revokes switchboard's token in a
// member (its token Secret is deleted, as an administrator revokes a
// service account token) while requests flow to that member through the
// hub, then repairs it with join. In between, every request gets the 503
// that names switchboard's credential and says what to do; from the
// moment join returns, every request works again, with no restart.
func TestImpersonatorTokenRevokedUnderLoad(t *testing.T) {
	ctx := context.Background()
	const cluster = "member1"
	member, err := f.State.Member(cluster)
	if err != nil {
		t.Fatal(err)
	}
	memberAdmin := f.Member(t, cluster)
	t.Cleanup(func() {
		// Whatever happened, leave the member joined and working.
		if r := plugin(t, "join", cluster, "--member-kubeconfig", member.Kubeconfig); r.Err != nil {
			t.Errorf("join in cleanup: %v\n%s", r.Err, r.Stderr)
		}
	})

	load := startMemberLoad(t, f.HubConfig(t), cluster, 4)
	began := time.Now()
	load.waitFor(t, "ok", 20, began, time.Minute)

	// Revoke: delete every token Secret of the impersonator.
	secrets, err := memberAdmin.CoreV1().Secrets(join.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	n := 0
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, join.ServiceAccountName+"-token-") {
			if err := memberAdmin.CoreV1().Secrets(join.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no token Secret of %s in %s/%s", join.ServiceAccountName, cluster, join.Namespace)
	}
	// The member stops accepting the token once its caches let go of it
	// (kube-apiserver keeps a successful authentication for 10 s).
	load.waitFor(t, "credential", 20, revoked, 2*time.Minute)
	firstRefusal := time.Time{}
	for _, a := range load.snapshot() {
		if a.kind == "credential" && (firstRefusal.IsZero() || a.end.Before(firstRefusal)) {
			firstRefusal = a.end
		}
	}

	joinStart := time.Now()
	out := mustPlugin(t, "join", cluster, "--member-kubeconfig", member.Kubeconfig)
	joined := time.Now()
	if !strings.Contains(out, "created Secret "+join.Namespace+"/"+join.ServiceAccountName+"-token-") ||
		!strings.Contains(out, "corrected Secret switchboard-system/"+cluster+"-credentials") {
		t.Errorf("join after the token was revoked:\n%s", out)
	}
	load.waitFor(t, "ok", 40, joined, time.Minute)
	load.stop()

	before, during, after := map[string]int{}, map[string]int{}, map[string]int{}
	var firstOK time.Time
	for _, a := range load.snapshot() {
		switch {
		case a.end.Before(revoked):
			before[a.kind]++
		case a.start.Before(joined):
			during[a.kind]++
		default:
			after[a.kind]++
		}
		if a.kind == "ok" && !a.start.Before(joinStart) && (firstOK.IsZero() || a.end.Before(firstOK)) {
			firstOK = a.end
		}
		// Every answer is a success or the credential's 503: nothing
		// else, at any time.
		if a.kind == "other" {
			t.Errorf("%s: %s", a.start.UTC().Format("15:04:05.000"), a.what)
		}
		// Once join has returned, switchboard uses the new token.
		if a.kind == "credential" && !a.start.Before(joined) {
			t.Errorf("%s, after join returned: %s", a.start.UTC().Format("15:04:05.000"), a.what)
		}
	}
	if before["credential"] > 0 {
		t.Errorf("%d credential refusals before the token was revoked", before["credential"])
	}
	t.Logf("before the revocation: %v; from the revocation until join returned: %v; after: %v", before, during, after)
	t.Logf("the first refusal came %s after the revocation; join took %s; the first success after join began came %s after it began",
		firstRefusal.Sub(revoked).Round(time.Millisecond), joined.Sub(joinStart).Round(time.Millisecond), firstOK.Sub(joinStart).Round(time.Millisecond))
}
