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
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/topology"
)

// trailEvent is what TestOneAuditTrail reads of an audit event.
type trailEvent struct {
	AuditID    string `json:"auditID"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
}

// TestOneAuditTrail follows one proxied request through three audit logs
// by the audit ID the hub gave it: the hub's, which knows who asked;
// switchboard's own, under the same ID (the hub's aggregator sends it);
// and member1's, which knows what ran, as whom, and now under which ID.
func TestOneAuditTrail(t *testing.T) {
	ctx := context.Background()
	if f.State.Hub.AuditLog == "" || f.State.Switchboard.AuditLog == "" {
		t.Fatalf("the topology at %s keeps no hub or switchboard audit log: it is older than this test; make local-down and start it again", f.State.RunDir)
	}
	member := f.State.Members[0]
	user := topology.AuditTrailUser

	// On the hub, the caller may proxy to member1; member1's RBAC gives it
	// nothing, and refuses the request itself.
	hub := f.Hub(t)
	name := "e2e:audit-trail"
	if _, err := hub.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"clusters/proxy"},
			ResourceNames: []string{member.Name}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hub.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = hub.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	cert, key, err := f.State.Hub.SignClient(user)
	if err != nil {
		t.Fatal(err)
	}
	config := rest.AnonymousClientConfig(f.HubConfig(t))
	config.CertData, config.KeyData = cert, key
	client, err := rest.HTTPClientFor(config)
	if err != nil {
		t.Fatal(err)
	}
	memberPath := "/api/v1/namespaces/" + member.PodNamespace
	hubPath := proxyPrefix + member.Name + "/proxy" + memberPath
	// RBAC on the hub takes a moment to reach the authorizer's cache.
	var auditID string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := client.Get(config.Host + hubPath)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `User \"`+user+`\" cannot get resource \"namespaces\"`) {
			t.Logf("waiting for member1's own refusal: %d %s", resp.StatusCode, body)
			return false, nil
		}
		auditID = resp.Header.Get("Audit-Id")
		return true, nil
	})
	if err != nil || auditID == "" {
		t.Fatalf("GET %s as %s: %v; audit ID %q", hubPath, user, err, auditID)
	}

	for _, log := range []struct {
		what, path, uri, user, as string
	}{
		{"the hub's", f.State.Hub.AuditLog, hubPath, user, ""},
		{"switchboard's", f.State.Switchboard.AuditLog, hubPath, user, ""},
		{member.Name + "'s", member.AuditLog, memberPath, "system:serviceaccount:" + join.Namespace + ":" + join.ServiceAccountName, user},
	} {
		var found []trailEvent
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			found = eventsWithID(t, log.path, auditID)
			return len(found) > 0, nil
		})
		if len(found) == 0 {
			t.Errorf("%s audit log %s has no event with the hub's audit ID %s", log.what, log.path, auditID)
			continue
		}
		for _, ev := range found {
			as := ""
			if ev.ImpersonatedUser != nil {
				as = ev.ImpersonatedUser.Username
			}
			if ev.RequestURI != log.uri || ev.User.Username != log.user || as != log.as {
				t.Errorf("%s audit event %s: %s by %q as %q; want %s by %q as %q", log.what, auditID, ev.RequestURI, ev.User.Username, as, log.uri, log.user, log.as)
			}
		}
	}
}

// eventsWithID reads the audit events with auditID from the log at path.
func eventsWithID(t *testing.T, path, auditID string) []trailEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(fmt.Errorf("reading the audit log: %w", err))
	}
	var out []trailEvent
	for _, line := range strings.Split(string(data), "\n") {
		var ev trailEvent
		if json.Unmarshal([]byte(line), &ev) == nil && ev.AuditID == auditID {
			out = append(out, ev)
		}
	}
	return out
}
