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
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/switchboard-io/switchboard/pkg/join"
)

// asMemberUser is the member's admin kubeconfig, impersonating user as a
// member of system:masters: an administrator RBAC lets do anything.
func asMemberUser(t *testing.T, kubeconfig, user string) (*rest.Config, string) {
	t.Helper()
	raw, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range raw.AuthInfos {
		auth.Impersonate, auth.ImpersonateGroups = user, []string{"system:masters"}
	}
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*raw, path); err != nil {
		t.Fatal(err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return config, path
}

func whoAmI(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return review.Status.UserInfo.Username
}

// TestJoinGuardsMemberObjects: in a real member, the ValidatingAdmissionPolicy
// join applies refuses changes to join's objects from anyone but the
// identity that ran join, even a cluster administrator, and lets the
// member's controllers and everything else through. Whoever joins next
// takes the guard over.
func TestJoinGuardsMemberObjects(t *testing.T) {
	ctx := context.Background()
	member, err := f.State.Member("member2")
	if err != nil {
		t.Fatal(err)
	}
	admin := f.Member(t, "member2")
	joiner := whoAmI(t, admin)
	malloryConfig, _ := asMemberUser(t, member.Kubeconfig, "mallory")
	mallory := kubernetes.NewForConfigOrDie(malloryConfig)
	dryRun := []string{metav1.DryRunAll}
	labelPatch := []byte(`{"metadata":{"labels":{"e2e.switchboard.io/touched":"yes"}}}`)

	token := ""
	secrets, err := admin.CoreV1().Secrets(join.Namespace).List(ctx, metav1.ListOptions{LabelSelector: join.ManagedByLabel + "=" + join.ManagedByValue})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, join.TokenSecretPrefix) {
			token = s.Name
		}
	}
	if token == "" {
		t.Fatalf("no token Secret in member2's %s", join.Namespace)
	}

	// guarded says what the guard let client do that it must not, and
	// logs the refusals once they are all there.
	guarded := func(t *testing.T, client kubernetes.Interface, allowed string) error {
		t.Helper()
		var refusals []string
		refused := func(what string, err error) error {
			if err == nil {
				return fmt.Errorf("%s: allowed, want 403 from %s naming %s", what, join.GuardName, allowed)
			}
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), join.GuardName) ||
				!strings.Contains(err.Error(), `only "`+allowed+`", who ran kubectl switchboard join`) {
				return fmt.Errorf("%s: %w, want 403 from %s naming %s", what, err, join.GuardName, allowed)
			}
			refusals = append(refusals, what+": "+err.Error())
			return nil
		}
		_, err := client.RbacV1().ClusterRoles().Patch(ctx, join.ClusterRoleName, types.MergePatchType, labelPatch, metav1.PatchOptions{})
		errs := []error{refused("patching ClusterRole "+join.ClusterRoleName, err)}
		err = client.RbacV1().ClusterRoleBindings().Delete(ctx, join.ClusterRoleName, metav1.DeleteOptions{DryRun: dryRun})
		errs = append(errs, refused("deleting ClusterRoleBinding "+join.ClusterRoleName, err))
		err = client.CoreV1().ServiceAccounts(join.Namespace).Delete(ctx, join.ServiceAccountName, metav1.DeleteOptions{DryRun: dryRun})
		errs = append(errs, refused("deleting ServiceAccount "+join.ServiceAccountName, err))
		err = client.CoreV1().Secrets(join.Namespace).Delete(ctx, token, metav1.DeleteOptions{DryRun: dryRun})
		errs = append(errs, refused("deleting the token Secret", err))
		err = client.CoreV1().Namespaces().Delete(ctx, join.Namespace, metav1.DeleteOptions{DryRun: dryRun})
		errs = append(errs, refused("deleting Namespace "+join.Namespace, err))
		// A second token for switchboard's impersonator, made by hand.
		_, err = client.CoreV1().Secrets(join.Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: join.TokenSecretPrefix, Namespace: join.Namespace,
				Labels:      map[string]string{join.ManagedByLabel: join.ManagedByValue},
				Annotations: map[string]string{corev1.ServiceAccountNameKey: join.ServiceAccountName},
			},
			Type: corev1.SecretTypeServiceAccountToken,
		}, metav1.CreateOptions{DryRun: dryRun})
		errs = append(errs, refused("creating another token Secret", err))
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for _, r := range refusals {
			t.Log(r)
		}
		return nil
	}

	t.Run("an administrator other than the joiner is refused", func(t *testing.T) {
		if err := guarded(t, mallory, joiner); err != nil {
			t.Error(err)
		}
	})

	t.Run("everything else stays open to that administrator", func(t *testing.T) {
		// Their own Secret beside switchboard's, and the objects of the
		// same kinds elsewhere.
		s, err := mallory.CoreV1().Secrets(join.Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "mallorys-", Namespace: join.Namespace},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating an unrelated Secret in %s: %v", join.Namespace, err)
		}
		if err := mallory.CoreV1().Secrets(join.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting it: %v", err)
		}
		if _, err := mallory.RbacV1().ClusterRoles().Patch(ctx, "view", types.MergePatchType, labelPatch, metav1.PatchOptions{DryRun: dryRun}); err != nil {
			t.Errorf("patching ClusterRole view: %v", err)
		}
		// Reading switchboard's objects is no change.
		if _, err := mallory.RbacV1().ClusterRoles().Get(ctx, join.ClusterRoleName, metav1.GetOptions{}); err != nil {
			t.Errorf("reading ClusterRole %s: %v", join.ClusterRoleName, err)
		}
	})

	t.Run("the joiner may change them", func(t *testing.T) {
		if _, err := admin.RbacV1().ClusterRoles().Patch(ctx, join.ClusterRoleName, types.MergePatchType, labelPatch, metav1.PatchOptions{DryRun: dryRun}); err != nil {
			t.Errorf("%s patching ClusterRole %s: %v", joiner, join.ClusterRoleName, err)
		}
		if err := admin.CoreV1().Secrets(join.Namespace).Delete(ctx, token, metav1.DeleteOptions{DryRun: dryRun}); err != nil {
			t.Errorf("%s deleting the token Secret: %v", joiner, err)
		}
	})

	t.Run("whoever joins next takes the guard over", func(t *testing.T) {
		bobConfig, bobKubeconfig := asMemberUser(t, member.Kubeconfig, "bob")
		out := mustPlugin(t, "join", "member2", "--member-kubeconfig", bobKubeconfig)
		if !strings.Contains(out, "corrected ValidatingAdmissionPolicy "+join.GuardName) {
			t.Errorf("join as bob:\n%s", out)
		}
		// Each API server takes the change up within moments.
		taken := time.Now()
		eventually(t, 20*time.Second, func() error { return guarded(t, admin, "bob") })
		t.Logf("the guard refused %s %.1f s after bob's join", joiner, time.Since(taken).Seconds())
		// Bob may change the role now; join corrects it, right after it
		// takes the guard back, as an API server may still hold bob's.
		bob := kubernetes.NewForConfigOrDie(bobConfig)
		rule := []byte(`[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}}]`)
		if _, err := bob.RbacV1().ClusterRoles().Patch(ctx, join.ClusterRoleName, types.JSONPatchType, rule, metav1.PatchOptions{}); err != nil {
			t.Fatalf("bob adding a rule to ClusterRole %s: %v", join.ClusterRoleName, err)
		}
		out = mustPlugin(t, "join", "member2", "--member-kubeconfig", member.Kubeconfig)
		if !strings.Contains(out, "corrected ValidatingAdmissionPolicy "+join.GuardName) ||
			!strings.Contains(out, "corrected ClusterRole "+join.ClusterRoleName) {
			t.Errorf("join as %s again:\n%s", joiner, out)
		}
		eventually(t, 20*time.Second, func() error { return guarded(t, mallory, joiner) })
	})

	t.Run("a server dry run by another administrator sends nothing the guard would refuse", func(t *testing.T) {
		// The joiner's ClusterRole lost a rule, which a join corrects.
		role, err := admin.RbacV1().ClusterRoles().Get(ctx, join.ClusterRoleName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		role.Rules = role.Rules[:1]
		if _, err := admin.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, malloryKubeconfig := asMemberUser(t, member.Kubeconfig, "mallory")
		started := time.Now()
		out := mustPlugin(t, "join", "member2", "--member-kubeconfig", malloryKubeconfig, "--dry-run=server")
		t.Logf("join --dry-run=server as mallory, %.1f s:\n%s", time.Since(started).Seconds(), out)
		for _, want := range []string{
			"corrected ValidatingAdmissionPolicy " + join.GuardName + " (server dry run)",
			"corrected ClusterRole " + join.ClusterRoleName + " (server dry run): not sent, as the guard",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the dry run does not say %q", want)
			}
		}
		started = time.Now()
		out = mustPlugin(t, "unjoin", "member2", "--member-kubeconfig", malloryKubeconfig, "--dry-run=server")
		t.Logf("unjoin --dry-run=server as mallory, %.1f s:\n%s", time.Since(started).Seconds(), out)
		for _, want := range []string{
			"deleted ValidatingAdmissionPolicy " + join.GuardName + " (server dry run)\n",
			"deleted ClusterRole " + join.ClusterRoleName + " (server dry run): not sent, as the guard",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the dry run does not say %q", want)
			}
		}
		// Neither stored a thing: the guard is the joiner's, and the
		// joiner's join corrects the role.
		if err := guarded(t, mallory, joiner); err != nil {
			t.Error(err)
		}
		out = mustPlugin(t, "join", "member2", "--member-kubeconfig", member.Kubeconfig)
		if !strings.Contains(out, "corrected ClusterRole "+join.ClusterRoleName+"\n") || strings.Contains(out, "ValidatingAdmissionPolicy "+join.GuardName+"\n") && !strings.Contains(out, "unchanged ValidatingAdmissionPolicy "+join.GuardName+"\n") {
			t.Errorf("join as %s after the dry runs:\n%s", joiner, out)
		}
	})

	t.Run("a plan shows the guard", func(t *testing.T) {
		out := mustPlugin(t, "join", "member2", "--member-kubeconfig", member.Kubeconfig, "--dry-run=client")
		if !strings.Contains(out, "kind: ValidatingAdmissionPolicy\n") || !strings.Contains(out, "name: "+join.GuardName) {
			t.Errorf("plan:\n%s", out)
		}
	})
}
