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

package join

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// UnjoinOptions say which member to remove.
type UnjoinOptions struct {
	Name         string
	HubNamespace string
	HubClient    kubernetes.Interface
	Switchboard  clientset.Interface
	// MemberClient, when set, also removes switchboard's objects from the
	// member; without it only the hub side goes. They stay while another
	// Cluster on the hub uses their token.
	MemberClient kubernetes.Interface
	// DryRun, when set, deletes nothing (see DryRun).
	DryRun DryRun
}

// Unjoin removes what Join created: the Cluster and its Secret on the hub,
// and, with a member client, the member's impersonator objects. It deletes
// only objects that carry switchboard's label, and succeeds when they are
// already gone, so it is safe to run twice. The member's objects stay when
// another Cluster on the hub holds one of its tokens: that Cluster would
// stop working.
func Unjoin(ctx context.Context, o UnjoinOptions) ([]Change, error) {
	if o.HubNamespace == "" {
		o.HubNamespace = DefaultHubNamespace
	}
	c := clients{member: o.MemberClient, hub: o.HubClient, sb: o.Switchboard}
	var tokens []corev1.Secret
	var keep, keepAgent string
	if o.MemberClient != nil {
		var err error
		if tokens, err = tokenSecrets(ctx, impersonator(o.MemberClient, nil)); err != nil {
			return nil, err
		}
		if keep, err = o.keepMemberObjects(ctx, tokens); err != nil {
			return nil, err
		}
		if keepAgent, err = o.keepAgent(ctx); err != nil {
			return nil, err
		}
	}
	agentTokens, err := o.agentTokens(ctx)
	if err != nil {
		return nil, err
	}
	// Join's objects the other way round, the hub's first. The binding and
	// the role go before the tokens, which go with their ServiceAccount.
	// The agent's objects in the member are this Cluster's alone, and go
	// even when the impersonator stays for another Cluster. The guard goes
	// before the member objects it guards, and stays while any of them do.
	var hub, guard, agent, member []*target
	d := declaration{name: o.Name, hubNamespace: o.HubNamespace, agent: &agentDeclaration{}, guard: &guardDeclaration{}}
	for _, obj := range slices.Backward(objects(d)) {
		found := tokens
		if obj.where == onHub {
			found = agentTokens
		}
		var into *[]*target
		switch {
		case obj.generated():
			continue
		case obj.where == onHub:
			into = &hub
		case o.MemberClient == nil:
			continue
		case obj.guard:
			if keep != "" || keepAgent != "" {
				continue
			}
			into = &guard
		case obj.agent:
			if keepAgent != "" {
				continue
			}
			into = &agent
		case obj.kind() == "Namespace" && keepAgent != "":
			// Deleting it would delete the agent with it.
			continue
		default:
			into = &member
		}
		if obj.kind() == "ServiceAccount" {
			for _, token := range found {
				if token.Annotations[corev1.ServiceAccountNameKey] == ptr.Deref(obj.config.GetName(), "") {
					*into = append(*into, c.target(object{where: obj.where, config: corev1ac.Secret(token.Name, token.Namespace)}))
				}
			}
		}
		*into = append(*into, c.target(obj))
	}

	w := &writer{dryRun: o.DryRun}
	var changes []Change
	if o.MemberClient != nil {
		// What stays of the member's objects, which a guard that stays
		// goes on guarding.
		var staying []object
		for _, obj := range objects(d) {
			if obj.where == inMember && !obj.guard &&
				(obj.agent && keepAgent != "" || !obj.agent && keep != "" || obj.kind() == "Namespace" && keepAgent != "") {
				staying = append(staying, obj)
			}
		}
		deleting := agent
		if keep == "" {
			deleting = append(deleting, member...)
		}
		if changes, err = o.guardBeforeRemoving(ctx, c, w, keep != "" || keepAgent != "", staying, deleting); err != nil {
			return changes, err
		}
	}
	narrowed := len(changes) > 0 && changes[0].Action != Unchanged && changes[0].Action != Kept
	if changes, err = w.remove(ctx, changes, hub); err != nil {
		if narrowed && w.dryRun == DryRunNone {
			err = fmt.Errorf("%w; the member's guard already guards only what was to stay: unjoin again to finish", err)
		}
		return changes, err
	}
	switch {
	case keepAgent != "":
		changes = append(changes, Change{Action: "kept", Object: "the member's " + names.Agent + " and namespace " + Namespace, Note: ": " + keepAgent})
	case o.MemberClient == nil && len(agentTokens) > 0:
		changes = append(changes, Change{Action: "left", Object: "the member's " + names.Agent,
			Note: ": without the member kubeconfig, its Deployment stays in the member, and retries a tunnel the hub now refuses; unjoin again with --member-kubeconfig to remove it"})
	}
	if changes, err = w.remove(ctx, changes, guard); err != nil {
		return changes, err
	}
	if changes, err = w.remove(ctx, changes, agent); err != nil || keep == "" {
		if err == nil {
			changes, err = w.remove(ctx, changes, member)
		}
		return changes, err
	}
	return append(changes, Change{
		Action: "kept",
		Object: "the member's switchboard objects (" + Namespace + ", " + ServiceAccountName + ", " + ClusterRoleName + ")",
		Note:   ": " + keep,
	}), nil
}

// guardBeforeRemoving readies the member's guard for unjoin's deletes of
// the member objects in deleting, which the user of the member kubeconfig
// may not be the one to be let through. When the guard goes with them,
// unjoin deletes it first. When it stays, to guard the objects in staying,
// unjoin takes it over first, narrowed to them, as it would refuse the
// deletes otherwise. In a server dry run, neither is stored, and a guard
// that refuses the user leaves the deletes not sent.
func (o *UnjoinOptions) guardBeforeRemoving(ctx context.Context, c clients, w *writer, stays bool, staying []object, deleting []*target) ([]Change, error) {
	found, err := o.MemberClient.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, GuardName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// None, or a member that serves no admission policies.
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ValidatingAdmissionPolicy %s in the member (nothing was deleted): %w", GuardName, err)
	case !isManaged(found):
		return nil, nil
	}
	who := func() (string, error) {
		user, err := memberUser(ctx, o.MemberClient)
		if err != nil {
			return "", fmt.Errorf("%w (nothing was deleted)", err)
		}
		return user, nil
	}
	if !stays {
		if w.dryRun == DryRunServer {
			user, err := who()
			if err != nil {
				return nil, err
			}
			if !guardLets(found, user) {
				w.refusingGuard = found
			}
		}
		return nil, nil
	}
	// Only when something it guards is there to delete.
	present := false
	for _, t := range deleting {
		current, err := t.get(ctx)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading %s (nothing was deleted): %w", t.inReports(), err)
		}
		present = present || err == nil && isManaged(current) && current.GetDeletionTimestamp() == nil
	}
	if !present {
		return nil, nil
	}
	user, err := who()
	if err != nil {
		return nil, err
	}
	narrowed := fmt.Sprintf(": it now guards what stays, and lets %q change it", user)
	if w.dryRun == DryRunClient {
		return []Change{w.change("ValidatingAdmissionPolicy "+GuardName, Corrected, narrowed)}, nil
	}
	var changes []Change
	for _, obj := range guardObjects(&guardDeclaration{joiner: user}, staying, map[string]string{ManagedByLabel: ManagedByValue}) {
		t := c.target(obj)
		current, err := t.get(ctx)
		switch {
		case err == nil:
			t.current = current
		case !apierrors.IsNotFound(err):
			return changes, fmt.Errorf("reading %s (nothing was deleted): %w", t.inReports(), err)
		}
		change, err := w.ensure(ctx, t)
		if err != nil {
			return changes, fmt.Errorf("taking the member's guard over, to delete what it guards (nothing was deleted): %w", err)
		}
		if change.Action != Unchanged && change.Action != Kept {
			change.Note += narrowed
		}
		changes = append(changes, change)
	}
	if w.dryRun == DryRunServer && !guardLets(found, user) {
		w.refusingGuard = found
	}
	return changes, nil
}

// agentTokens are the token Secrets of the Cluster's agent on the hub:
// none when it has no agent, which takes one read to tell.
func (o *UnjoinOptions) agentTokens(ctx context.Context) ([]corev1.Secret, error) {
	account := agentAccount(o.HubClient, o.HubNamespace, o.Name, nil)
	_, err := o.HubClient.CoreV1().ServiceAccounts(account.namespace).Get(ctx, account.serviceAccount, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ServiceAccount %s/%s on the hub (nothing was deleted): %w", account.namespace, account.serviceAccount, err)
	}
	return tokenSecrets(ctx, account)
}

// keepAgent says why the member's switchboard-agent must stay, or "" when
// unjoin may delete it: it stays when it serves another Cluster.
func (o *UnjoinOptions) keepAgent(ctx context.Context) (string, error) {
	d, err := o.MemberClient.AppsV1().Deployments(Namespace).Get(ctx, names.Agent, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading Deployment %s/%s in the member (nothing was deleted): %w", Namespace, names.Agent, err)
	}
	if serves := agentCluster(d); serves != o.Name {
		return fmt.Sprintf("it serves Cluster %q, not %q", serves, o.Name), nil
	}
	return "", nil
}

// remove deletes the targets switchboard owns, in order, and adds what it
// did to changes. Targets that are gone, or already going, it leaves out.
func (w *writer) remove(ctx context.Context, changes []Change, targets []*target) ([]Change, error) {
	for _, t := range targets {
		current, err := t.get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return changes, fmt.Errorf("reading %s: %w", t.inReports(), err)
		case current.GetDeletionTimestamp() != nil:
			// Already on its way out, from an earlier unjoin.
			continue
		case !isManaged(current):
			changes = append(changes, Change{Object: t.inReports(), Action: Kept})
			continue
		}
		if note := w.guardNote(t); note != "" {
			changes = append(changes, w.change(t.inReports(), Deleted, note))
			continue
		}
		if w.dryRun != DryRunClient {
			if err := t.delete(ctx, w.deleteOptions()); ignoreNotFound(err) != nil {
				return changes, fmt.Errorf("deleting %s: %w", t.inReports(), err)
			}
		}
		changes = append(changes, w.change(t.inReports(), Deleted, ""))
	}
	return changes, nil
}

// keepMemberObjects says why the member's objects must stay, or "" when
// unjoin may delete them. They stay when the Cluster being unjoined does
// not use this member's token (the member kubeconfig is for another
// member), and while other Clusters on the hub hold one of its tokens:
// deleting them would cut those off. It reads everything before unjoin
// deletes anything.
func (o *UnjoinOptions) keepMemberObjects(ctx context.Context, tokens []corev1.Secret) (string, error) {
	if len(tokens) == 0 {
		return "", nil
	}
	issued := map[string]bool{}
	for _, t := range tokens {
		if token := t.Data[corev1.ServiceAccountTokenKey]; len(token) > 0 {
			issued[string(token)] = true
		}
	}
	secrets, err := o.HubClient.CoreV1().Secrets(o.HubNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing the credentials Secrets in %s on the hub, to see whether another Cluster uses this member's identity "+
			"(nothing was deleted): %w", o.HubNamespace, err)
	}
	using := map[string]bool{}
	for _, s := range secrets.Items {
		if issued[string(s.Data[v1alpha1.SecretKeyToken])] {
			using[s.Name] = true
		} else if s.Name == SecretName(o.Name) && isManaged(&s) {
			return fmt.Sprintf("Cluster %s on the hub uses no token of this member: is --member-kubeconfig the member it points at?", o.Name), nil
		}
	}
	if len(using) == 0 {
		return "", nil
	}
	clusters, err := o.Switchboard.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing Clusters on the hub, to see whether another one uses this member's identity (nothing was deleted): %w", err)
	}
	var names []string
	for _, c := range clusters.Items {
		if c.Name != o.Name && using[c.Spec.CredentialsSecretRef.Name] {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return stillUsing(names) + " their token", nil
}

// stillUsing is "Cluster a on the hub still uses", or "Clusters a, b on
// the hub still use".
func stillUsing(clusters []string) string {
	if len(clusters) == 1 {
		return "Cluster " + clusters[0] + " on the hub still uses"
	}
	return "Clusters " + strings.Join(clusters, ", ") + " on the hub still use"
}
