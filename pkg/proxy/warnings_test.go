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
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// recordedWarnings is a client-go warning handler that keeps what it gets.
type recordedWarnings struct {
	mu    sync.Mutex
	texts []string
}

func (r *recordedWarnings) HandleWarningHeader(_ int, _ string, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.texts = append(r.texts, text)
}

func (r *recordedWarnings) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.texts, "\n")
}

// client-go's discovery replaces a 503 Status's message with a fixed
// text, so on discovery paths switchboard's errors also go out as a
// Warning, which kubectl prints; resource requests, whose clients read
// the Status, get none.
func TestDiscoveryErrorsAlsoComeAsWarnings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, f *fixture, name string)
		message string
	}{{
		name: "member known to be down",
		setup: func(t *testing.T, f *fixture, name string) {
			f.addMember(t, name, newMember(t, nil), "")
			health := newFakeHealth()
			health.setDown(name, "the member did not answer in time", time.Now())
			f.proxier.health = health
		},
		message: "is unreachable: its last probe",
	}, {
		name: "member rejecting the credential",
		setup: func(t *testing.T, f *fixture, name string) {
			f.addMember(t, name, newMember(t, answerWith(http.StatusUnauthorized, nil, "")), "")
		},
		message: "rejected switchboard's credential",
	}, {
		name: "member that cannot be dialled",
		setup: func(t *testing.T, f *fixture, name string) {
			f.putSecret(t, newSecret(secretName(name), map[string][]byte{"token": []byte(testToken)}))
			cl := newCluster(name, unreachableEndpoint(t, false))
			cl.Spec.InsecureSkipTLSVerify = true
			f.putCluster(t, cl)
		},
		message: "is unreachable at https://",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			name := "warn-" + strings.ReplaceAll(tc.name, " ", "-")
			f := newFixture(t)
			tc.setup(t, f, name)
			fe := f.newFrontend(t, name, alice, nil)

			for path, warned := range map[string]bool{
				"/api":                        true,
				"/apis/apps/v1":               true,
				"/version":                    true,
				"/openapi/v3":                 true,
				"/api/v1/namespaces/dev/pods": false,
			} {
				resp, body := fe.do(t, http.MethodGet, proxyPath(name, path), nil, "")
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("GET %s = %d %s, want 503", path, resp.StatusCode, body)
				}
				got := resp.Header.Get("Warning")
				if warned != strings.Contains(got, tc.message) || !warned && got != "" {
					t.Errorf("GET %s: Warning %q, want one with %q: %v", path, got, tc.message, warned)
				}
			}

			// What kubectl sees: discovery fails with client-go's fixed
			// text, and the warning carries switchboard's.
			warnings := &recordedWarnings{}
			client, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: fe.srv.URL + proxyPath(name, ""), WarningHandler: warnings})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.ServerGroups(); err == nil {
				t.Fatal("discovery of a member switchboard cannot reach passed")
			}
			if got := warnings.all(); !strings.Contains(got, tc.message) {
				t.Errorf("discovery warnings %q, want one with %q", got, tc.message)
			}
		})
	}
}
