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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	admissionac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/switchboard-io/switchboard/pkg/names"
)

// The guard is a ValidatingAdmissionPolicy in the member, and its binding,
// that refuses creates, changes and deletes of the objects join set up
// there, but from the identity that ran join last and from the member's
// own control plane. Join applies it before anything it guards, and unjoin
// deletes it before them, so that whoever runs either may. Admission
// policies do not guard themselves here: an administrator who may delete
// ValidatingAdmissionPolicies can always lift the guard.

// GuardName names the guard's policy and binding in the member.
const GuardName = names.MemberGuard

// guardAPI is the group, version and resource the guard needs the member to
// serve: Kubernetes 1.30 and newer.
var guardAPI = admissionregistrationv1.SchemeGroupVersion.WithResource("validatingadmissionpolicies")

// controlPlaneUsers change join's objects in the member as part of their
// work: the API server marks when a token Secret was last used, and the
// controller manager's token, garbage and namespace controllers fill,
// clean up and delete them. With --use-service-account-credentials those
// controllers are the service accounts of kube-system.
var controlPlaneUsers = []string{"system:apiserver", "system:kube-controller-manager"}

const controlPlaneAccounts = "system:serviceaccount:kube-system:"

// guardDeclaration is the guard of one join.
type guardDeclaration struct {
	// joiner is the user the member kubeconfig authenticates as.
	joiner string
}

// guardedResource is one resource of the objects the guard covers.
type guardedResource struct {
	gvr   schema.GroupVersionResource
	names []string
}

// guardObjects are the guard's policy and binding for the member objects
// in guarded, labelled as join labels what it owns.
func guardObjects(g *guardDeclaration, guarded []object, labels map[string]string) []object {
	resources := guardedResources(guarded)
	// One rule per group and version, in the order of the objects.
	var rules []*admissionac.NamedRuleWithOperationsApplyConfiguration
	byGroupVersion := map[schema.GroupVersion]*admissionac.NamedRuleWithOperationsApplyConfiguration{}
	for _, r := range resources {
		gv := r.gvr.GroupVersion()
		rule, ok := byGroupVersion[gv]
		if !ok {
			rule = admissionac.NamedRuleWithOperations().
				WithAPIGroups(gv.Group).WithAPIVersions(gv.Version).
				WithOperations(admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete)
			byGroupVersion[gv] = rule
			rules = append(rules, rule)
		}
		rule.WithResources(r.gvr.Resource)
	}
	policy := admissionac.ValidatingAdmissionPolicy(GuardName).WithLabels(labels).WithSpec(
		admissionac.ValidatingAdmissionPolicySpec().
			WithFailurePolicy(admissionregistrationv1.Fail).
			WithMatchConstraints(admissionac.MatchResources().
				WithObjectSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
				WithResourceRules(rules...)).
			WithMatchConditions(admissionac.MatchCondition().WithName("switchboard-objects").WithExpression(guardMatch(resources))).
			WithValidations(admissionac.Validation().
				WithExpression(guardAllows(g.joiner)).
				WithMessage(guardMessage(g.joiner)).
				WithReason(metav1.StatusReasonForbidden)))
	binding := admissionac.ValidatingAdmissionPolicyBinding(GuardName).WithLabels(labels).WithSpec(
		admissionac.ValidatingAdmissionPolicyBindingSpec().
			WithPolicyName(GuardName).
			WithValidationActions(admissionregistrationv1.Deny))
	return []object{
		// The API server fills in the items of the rules.
		{where: inMember, guard: true, defaulted: true, config: policy},
		{where: inMember, guard: true, config: binding},
	}
}

// guardedResources are the resources of the member objects in objs, each
// with the names of those objects, in the order they first appear. The
// token Secret, whose name is generated, is matched by its prefix.
func guardedResources(objs []object) []guardedResource {
	var out []guardedResource
	index := map[schema.GroupVersionResource]int{}
	for _, obj := range objs {
		if obj.where != inMember || obj.guard {
			continue
		}
		gvr := obj.resource()
		i, ok := index[gvr]
		if !ok {
			i = len(out)
			index[gvr] = i
			out = append(out, guardedResource{gvr: gvr})
		}
		if !obj.generated() {
			out[i].names = append(out[i].names, ptr.Deref(obj.config.GetName(), ""))
		}
	}
	return out
}

// guardMatch is the CEL condition under which the guard applies: to join's
// objects by their names, in the member's namespace (or none, for
// cluster-scoped objects and the Namespace itself). The request has no
// namespace for a cluster-scoped object, and no name for a create with a
// generated name, whose object holds it by the time validating admission
// runs; neither name is there for the collection as a whole in a
// deletecollection, which the object selector leaves out. Any error would
// refuse the request, as the policy fails closed.
func guardMatch(resources []guardedResource) string {
	entries := make([]string, len(resources))
	for i, r := range resources {
		entries[i] = fmt.Sprintf("%q: [%s]", r.gvr.Resource, strings.Join(quoteAll(r.names), ", "))
	}
	name := `(has(request.name) && request.name != "" ? request.name : (object != null ? object.metadata.name : ""))`
	return fmt.Sprintf(`(!has(request.namespace) || request.namespace in ["", %q]) && (`+
		`request.resource.resource == "secrets" && %s.startsWith(%q) || `+
		`%s in {%s}[request.resource.resource])`,
		Namespace, name, TokenSecretPrefix, name, strings.Join(entries, ", "))
}

// guardAllows is the CEL expression that lets the joiner and the member's
// control plane through. strconv.Quote's escapes are CEL's too.
func guardAllows(joiner string) string {
	users := append([]string{strconv.Quote(joiner)}, quoteAll(controlPlaneUsers)...)
	return fmt.Sprintf(`request.userInfo.username in [%s] || request.userInfo.username.startsWith(%q)`,
		strings.Join(users, ", "), controlPlaneAccounts)
}

func quoteAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strconv.Quote(s)
	}
	return out
}

// guardMessage is what the guard answers whoever it refuses.
func guardMessage(joiner string) string {
	return fmt.Sprintf("this object belongs to switchboard, and only %q, who ran kubectl switchboard join (or unjoin) on this cluster last, "+
		"and the cluster's control plane may change it: run kubectl switchboard join or unjoin as that user, "+
		"or, to lift the guard, delete ValidatingAdmissionPolicy %s", joiner, GuardName)
}

// guardFor decides whether this join guards the member's objects: it needs
// the member to serve admission policies and to say who the member
// kubeconfig is. When it cannot, it says why, for a warning.
func (o *Options) guardFor(ctx context.Context) (*guardDeclaration, string, error) {
	resources, err := o.MemberClient.Discovery().ServerResourcesForGroupVersion(guardAPI.GroupVersion().String())
	switch {
	case apierrors.IsNotFound(err):
		resources = &metav1.APIResourceList{}
	case err != nil:
		return nil, "", o.explain(fmt.Errorf("reading the member's %s resources: %w", guardAPI.GroupVersion(), err), inMember)
	}
	if !slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Name == guardAPI.Resource }) {
		return nil, fmt.Sprintf("the member at %s serves no %s %s (Kubernetes 1.30 or newer does): "+
			"nothing stops others from changing the objects join sets up in it", o.address(inMember), guardAPI.GroupVersion(), guardAPI.Resource), nil
	}
	joiner, err := memberUser(ctx, o.MemberClient)
	if err != nil {
		return nil, "", o.explain(fmt.Errorf("the member at %s: %w", o.address(inMember), err), inMember)
	}
	return &guardDeclaration{joiner: joiner}, "", nil
}

// memberUser is the user the member kubeconfig authenticates as, whom the
// guard lets through.
func memberUser(ctx context.Context, member kubernetes.Interface) (string, error) {
	review, err := member.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("asking the member who the member kubeconfig is (SelfSubjectReview), "+
			"for the ValidatingAdmissionPolicy that guards join's objects: %w", err)
	}
	if review.Status.UserInfo.Username == "" {
		return "", errors.New("the member says the member kubeconfig has no user name (SelfSubjectReview); one is needed to guard switchboard's objects")
	}
	return review.Status.UserInfo.Username, nil
}

// guardLets says whether the guard's policy, as found in the member, lets
// user change the objects it guards.
func guardLets(found metav1.Object, user string) bool {
	policy, ok := found.(*admissionregistrationv1.ValidatingAdmissionPolicy)
	if !ok {
		return false
	}
	return slices.ContainsFunc(policy.Spec.Validations, func(v admissionregistrationv1.Validation) bool {
		return v.Expression == guardAllows(user)
	})
}

// guardCovers says whether the guard's policy, as found in the member,
// applies to writes of obj: its match condition names obj's resource and
// obj's name, or the token Secrets' prefix for a token Secret. It reads
// the condition as guardMatch writes it, and errs towards yes.
func guardCovers(found metav1.Object, obj object) bool {
	policy, ok := found.(*admissionregistrationv1.ValidatingAdmissionPolicy)
	if !ok {
		return true
	}
	resource := strconv.Quote(obj.resource().Resource) + ": ["
	name := ptr.Deref(obj.config.GetName(), "")
	token := obj.generated() || obj.resource().Resource == "secrets" && strings.HasPrefix(name, TokenSecretPrefix)
	name = strconv.Quote(name)
	return slices.ContainsFunc(policy.Spec.MatchConditions, func(m admissionregistrationv1.MatchCondition) bool {
		if token {
			return strings.Contains(m.Expression, strconv.Quote(TokenSecretPrefix))
		}
		i := strings.Index(m.Expression, resource)
		if i < 0 {
			return false
		}
		names, _, _ := strings.Cut(m.Expression[i+len(resource):], "]")
		return slices.Contains(strings.Split(names, ", "), name)
	})
}

// foundGuard is the guard's policy among targets as inspect found it, or
// nil.
func foundGuard(targets []*target) metav1.Object {
	for _, t := range targets {
		if _, ok := t.config.(*admissionac.ValidatingAdmissionPolicyApplyConfiguration); ok && t.current != nil {
			return t.current
		}
	}
	return nil
}

// notSentGuarded qualifies a server dry run's change to a guarded member
// object that was not sent: the guard in the member lets another user
// through, and the dry run's takeover of it stored nothing, so the guard
// as it is would refuse the write. A real run takes the guard over first.
const notSentGuarded = ": not sent, as the guard in the member lets only the user who ran join (or unjoin) last change it, until a real run takes the guard over or deletes it"

// guardSettle bounds the wait for the member's API servers to take up a
// change of the guard: each refreshes its admission policies about once a
// second, on its own.
var guardSettle = 15 * time.Second

// guardRefusal begins the message of a request the guard refused.
const guardRefusal = "ValidatingAdmissionPolicy '" + GuardName + "'"

// MemberClient is the client join and unjoin reach the member with. A
// request the guard refuses is sent again for up to guardSettle: right
// after join took the guard over, or unjoin deleted it, an API server may
// still hold the guard as it was.
func MemberClient(config *rest.Config) (kubernetes.Interface, error) {
	c := rest.CopyConfig(config)
	c.Wrap(func(next http.RoundTripper) http.RoundTripper { return &guardSettling{next: next} })
	return kubernetes.NewForConfig(c)
}

type guardSettling struct{ next http.RoundTripper }

func (g *guardSettling) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || req.Body != nil && req.GetBody == nil {
		return g.next.RoundTrip(req)
	}
	deadline := time.Now().Add(guardSettle)
	for {
		resp, err := g.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			return resp, err
		}
		// A Status is small: the guard's refusal is in its first MiB.
		// The caller reads the whole answer, whatever its length.
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		if !bytes.Contains(body, []byte(guardRefusal)) || time.Now().After(deadline) {
			resp.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(body), resp.Body), Closer: resp.Body}
			return resp, nil
		}
		resp.Body.Close()
		select {
		case <-req.Context().Done():
			resp.Body = io.NopCloser(bytes.NewReader(body))
			return resp, nil
		case <-time.After(500 * time.Millisecond):
		}
		if req, err = resent(req); err != nil {
			return nil, err
		}
	}
}

// resent is req ready to be sent again, with its body from the start.
func resent(req *http.Request) (*http.Request, error) {
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		again.Body = body
	}
	return again, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
