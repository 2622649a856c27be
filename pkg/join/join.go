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
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
	k8sversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/validation"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/identity"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/reach"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// DefaultHubNamespace holds switchboard and the credentials Secrets on the hub.
const DefaultHubNamespace = names.Namespace

// Options say which member to join, and how to reach the member and the hub.
type Options struct {
	// Name is the Cluster's name on the hub.
	Name string
	// Endpoint is the member's API server as switchboard reaches it;
	// empty means the server of the member kubeconfig.
	Endpoint string
	// MemberConfig comes from the member kubeconfig, with rights to set up
	// the impersonator identity.
	MemberConfig *rest.Config
	// HubConfig comes from the hub kubeconfig.
	HubConfig *rest.Config
	// HubNamespace holds the credentials Secret; DefaultHubNamespace if empty.
	HubNamespace string
	// TokenTimeout bounds the wait for the member's token controller.
	TokenTimeout time.Duration
	// VerifyTimeout bounds the end-to-end check through the hub.
	VerifyTimeout time.Duration
	// Connection is how switchboard reaches the member. Empty leaves an
	// existing Cluster's as it is (a new one defaults to Direct). For
	// Tunnel, the member's switchboard-agent must hold its tunnel for the
	// check through the hub to pass.
	Connection v1alpha1.Connection
	// Agent, when set, sets up the member's switchboard-agent and its hub
	// identity, and the Cluster's connection is Tunnel.
	Agent *Agent
	// Identity, when set, is the Cluster's identity policy. Nil keeps an
	// existing Cluster's, and a new one has none.
	Identity *identity.Policy
	// Overwrite lets join re-point an existing Cluster at another
	// endpoint; without it, join refuses.
	Overwrite bool
	// DryRun, when set, changes nothing (see DryRun).
	DryRun DryRun

	// Clients, built from the configs when nil (tests set them).
	MemberClient kubernetes.Interface
	HubClient    kubernetes.Interface
	Switchboard  clientset.Interface
	// checkToken, checkAgentToken and verify replace the real checks in
	// tests.
	checkToken      tokenChecker
	checkAgentToken tokenChecker
	verify          func(ctx context.Context) (string, error)
	// memberCA and hubCA are the CA bundles the kubeconfigs trust, if any.
	memberCA, hubCA []byte
	// What inspect found: the Cluster points at another member now
	// (Overwrite), and the member holds the agent's kubeconfig. Without
	// both, the agent's hub token is replaced, so that no agent elsewhere
	// still holds one that works.
	repointed, agentCredentialFound bool
	// generationBefore is the Cluster's generation before join wrote it.
	generationBefore int64
	// guard guards the member's objects; nil when the member cannot.
	guard *guardDeclaration
}

// Result is what Join did.
type Result struct {
	Changes []Change
	// AlreadyAuthorized is true when nothing needed to change.
	AlreadyAuthorized bool
	// Verified says what the check through the hub saw.
	Verified string
	// Warnings are worth telling the user, but do not stop the join.
	Warnings []string
}

// Error is a join that failed after it changed something. It put back
// what it could; RolledBack says what, and RollbackErr what it could not.
// Repairs of drifted member objects (a role's rules put right) are not
// undone; Repaired lists them.
type Error struct {
	Err         error
	RolledBack  []Change
	RollbackErr error
	Repaired    []Change
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// SecretName is the hub Secret that holds a member's credentials.
func SecretName(cluster string) string { return cluster + "-credentials" }

func (o *Options) complete() error {
	if o.HubNamespace == "" {
		o.HubNamespace = DefaultHubNamespace
	}
	if o.TokenTimeout == 0 {
		o.TokenTimeout = time.Minute
	}
	if o.VerifyTimeout == 0 {
		o.VerifyTimeout = time.Minute
	}
	if o.Endpoint == "" && o.MemberConfig != nil {
		o.Endpoint = o.MemberConfig.Host
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(o.Name); len(msgs) > 0 {
		return fmt.Errorf("%q is not a valid cluster name: %s", o.Name, strings.Join(msgs, "; "))
	}
	if _, errs := identity.Compile(o.Identity, field.NewPath("spec", "identity")); len(errs) > 0 {
		return fmt.Errorf("the identity policy is not valid: %w", errs.ToAggregate())
	}
	if o.Agent != nil {
		if err := ValidateAgentName(o.Name); err != nil {
			return err
		}
		switch o.Connection {
		case "":
			o.Connection = v1alpha1.ConnectionTunnel
		case v1alpha1.ConnectionTunnel:
		default:
			return fmt.Errorf("a switchboard-agent serves only a Cluster reached through a tunnel, not with connection %s", o.Connection)
		}
		if o.Agent.Image == "" {
			return errors.New("the agent's container image is not set")
		}
		if o.Agent.HubServer == "" && o.HubConfig != nil {
			o.Agent.HubServer = o.HubConfig.Host
		}
	}
	var err error
	if o.memberCA, err = caBundle(o.MemberConfig, "member"); err != nil {
		return err
	}
	if o.hubCA, err = caBundle(o.HubConfig, "hub"); err != nil {
		return err
	}
	if o.MemberClient == nil {
		if o.MemberClient, err = MemberClient(o.MemberConfig); err != nil {
			return err
		}
	}
	if o.HubClient == nil {
		if o.HubClient, err = kubernetes.NewForConfig(o.HubConfig); err != nil {
			return err
		}
	}
	if o.Switchboard == nil {
		if o.Switchboard, err = clientset.NewForConfig(o.HubConfig); err != nil {
			return err
		}
	}
	if o.checkToken == nil {
		o.checkToken = selfSubjectReviewChecker(o.MemberConfig, impersonator(nil, nil).user())
	}
	if o.checkAgentToken == nil {
		o.checkAgentToken = selfSubjectReviewChecker(o.HubConfig, agentAccount(nil, o.HubNamespace, o.Name, nil).user())
	}
	if o.verify == nil {
		o.verify = o.verifyThroughHub
	}
	return nil
}

// address is the API server of the member or the hub, for messages.
func (o *Options) address(which string) string {
	switch {
	case which == onHub && o.HubConfig != nil:
		return o.HubConfig.Host
	case which == onHub:
		return "(hub)"
	case o.MemberConfig != nil:
		return o.MemberConfig.Host
	}
	return o.Endpoint
}

// Join sets up a member for switchboard: the impersonate-only identity in
// the member, its token in the hub Secret, and the Cluster on the hub. Then
// it checks the result through the hub's proxy path as the caller. It
// changes nothing that is already right, and repairs what is not.
//
// It reads and checks everything before its first write: a Cluster or
// Secret it does not own, or a Cluster that points elsewhere (without
// Overwrite), stops it with nothing changed. When a later step fails,
// including the check through the hub, it puts back what it wrote and
// returns an *Error saying so.
func Join(ctx context.Context, o Options) (*Result, error) {
	if o.DryRun == DryRunClient {
		return nil, errors.New("join cannot run a client dry run: it would need the clusters' answers; print Plan instead, or use DryRunServer")
	}
	if err := o.complete(); err != nil {
		return nil, err
	}
	if err := ValidateEndpoint(o.Endpoint); err != nil {
		return nil, err
	}
	guard, unguarded, err := o.guardFor(ctx)
	if err != nil {
		return nil, err
	}
	o.guard = guard
	if err := o.preflight(ctx); err != nil {
		return nil, err
	}
	result := &Result{}
	targets, err := o.inspect(ctx)
	if err != nil {
		return result, err
	}
	result.Warnings = append(o.hubAsMemberWarning(ctx), o.agentWarnings()...)
	if unguarded != "" {
		result.Warnings = append(result.Warnings, unguarded)
	}
	w := &writer{dryRun: o.DryRun}
	if err := o.write(ctx, targets, w, result); err != nil {
		return result, o.rollback(ctx, w, err)
	}
	result.AlreadyAuthorized = true
	for _, c := range result.Changes {
		if c.Action != Unchanged && c.Action != Kept {
			result.AlreadyAuthorized = false
		}
	}
	if o.DryRun != DryRunNone {
		return result, nil
	}
	started := time.Now()
	verified, err := o.verify(ctx)
	if err != nil && isPolicyRefusal(err) {
		// The Cluster's identity policy refuses whoever runs join (a hub
		// administrator, say): a probe switchboard makes as itself, after
		// join's writes, shows the way to the member instead.
		verified, err = o.verifyByProbe(ctx, err, started)
	}
	if err != nil {
		return result, o.rollback(ctx, w, fmt.Errorf("a request through the hub to cluster %q failed: %w", o.Name, err))
	}
	result.Verified = verified
	return result, nil
}

// ValidateEndpoint checks a member endpoint as the hub's validation of
// Clusters will, so that join refuses it before it changes anything.
func ValidateEndpoint(endpoint string) error {
	errs := validation.ValidateEndpoint(endpoint, field.NewPath("endpoint"))
	if len(errs) == 0 {
		return nil
	}
	details := make([]string, len(errs))
	for i, e := range errs {
		details[i] = e.Detail
	}
	return fmt.Errorf("the member endpoint %q is not valid: %s", endpoint, strings.Join(details, "; "))
}

// objects are the objects this join declares; cred is nil until join has
// the member's token, agentKubeconfig until it has the agent's. The CA the
// member kubeconfig trusts, the one for its endpoint, goes before the
// token Secret's.
func (o *Options) objects(cred *Credential, agentKubeconfig []byte) []object {
	if cred != nil && len(o.memberCA) > 0 {
		cred = &Credential{Token: cred.Token, CACert: o.memberCA}
	}
	d := declaration{
		name: o.Name, endpoint: o.Endpoint, hubNamespace: o.HubNamespace,
		insecure:   o.MemberConfig != nil && o.MemberConfig.Insecure,
		connection: o.Connection, cred: cred, identity: o.Identity, guard: o.guard,
	}
	if o.Agent != nil {
		d.agent = &agentDeclaration{Agent: *o.Agent, kubeconfig: agentKubeconfig}
	}
	return objects(d)
}

// write applies the declared objects in order, recording each change in
// result and how to undo it in w. The tokens come from ensureToken: the
// hub Secret holds the member's from then on, and the agent's kubeconfig
// in the member the agent's.
func (o *Options) write(ctx context.Context, targets []*target, w *writer, result *Result) error {
	var cred *Credential
	var kubeconfig []byte
	if found := foundGuard(targets); w.dryRun == DryRunServer && found != nil && !guardLets(found, o.guard.joiner) {
		w.refusingGuard = found
	}
	for _, t := range targets {
		var change Change
		var err error
		if t.generated() {
			account := impersonator(o.MemberClient, o.checkToken)
			if t.where == onHub {
				account = agentAccount(o.HubClient, o.HubNamespace, o.Name, o.checkAgentToken)
				switch {
				case o.repointed:
					account.replace = "the Cluster now points at another member"
				case !o.agentCredentialFound:
					account.replace = "the member holds no kubeconfig with it"
				}
			}
			var token *Credential
			if token, change, err = ensureToken(ctx, account, o.TokenTimeout, t, w); err == nil {
				if t.where == onHub {
					kubeconfig, err = agentKubeconfig(o.HubConfig, o.hubCA, o.Agent.HubServer, token.Token)
				} else {
					cred = token
				}
				for i, obj := range o.objects(cred, kubeconfig) {
					targets[i].config = obj.config
				}
			}
		} else {
			change, err = w.ensure(ctx, t)
		}
		if err != nil {
			return o.explain(err, t.where)
		}
		result.Changes = append(result.Changes, change)
	}
	return nil
}

// rollback puts back what w recorded and wraps cause in an *Error that
// says what it put back and what it left repaired. When join changed
// nothing, cause comes back as it is.
func (o *Options) rollback(ctx context.Context, w *writer, cause error) error {
	if len(w.undo) == 0 && len(w.repairs) == 0 {
		return cause
	}
	undone, err := w.rollback(ctx)
	return &Error{Err: cause, RolledBack: undone, RollbackErr: err, Repaired: w.repairs}
}

// explain turns connection failures into an UnreachableError naming the address.
func (o *Options) explain(err error, which string) error {
	if classified := classify(which, o.address(which), err); classified != nil {
		return classified
	}
	return err
}

// preflight checks, once and before changing anything, that both API
// servers answer and that the kubeconfigs may do what join does: read,
// apply and (to roll back) delete each object it declares, find the token
// Secrets, and reach the member through the hub.
func (o *Options) preflight(ctx context.Context) error {
	needs := map[string][]authorizationv1.ResourceAttributes{}
	for _, obj := range o.objects(nil, nil) {
		verbs := []string{"get", "create", "patch", "delete"}
		if obj.generated() {
			verbs = []string{"create", "delete", "list"}
		}
		gvr := obj.resource()
		for _, verb := range verbs {
			needs[obj.where] = append(needs[obj.where], authorizationv1.ResourceAttributes{
				Verb: verb, Group: gvr.Group, Resource: gvr.Resource, Namespace: ptr.Deref(obj.config.GetNamespace(), ""),
			})
		}
	}
	// Granting impersonation takes holding it (or escalate).
	needs[inMember] = append(needs[inMember], authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users"})
	needs[onHub] = append(needs[onHub], authorizationv1.ResourceAttributes{
		Verb: "get", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: "proxy", Name: o.Name,
	})
	if o.Agent != nil {
		// Granting the agent its tunnel takes holding that right (or bind).
		needs[onHub] = append(needs[onHub], authorizationv1.ResourceAttributes{
			Verb: "create", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: tunnel.Subresource, Name: o.Name,
		})
	}
	if err := o.checkAccess(ctx, o.MemberClient, inMember, needs[inMember]); err != nil {
		return err
	}
	if err := o.checkAccess(ctx, o.HubClient, onHub, needs[onHub]); err != nil {
		return err
	}
	if _, err := o.HubClient.Discovery().ServerResourcesForGroupVersion(v1alpha1.SchemeGroupVersion.String()); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the hub at %s does not serve %s: is switchboard installed and its APIService Available?", o.address(onHub), v1alpha1.SchemeGroupVersion)
		}
		return o.explain(err, onHub)
	}
	return nil
}

func (o *Options) checkAccess(ctx context.Context, client kubernetes.Interface, which string, needs []authorizationv1.ResourceAttributes) error {
	var missing []string
	for _, attrs := range needs {
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			return o.explain(err, which)
		}
		if !review.Status.Allowed {
			missing = append(missing, describe(attrs))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the %s kubeconfig (%s) may not: %s", which, o.address(which), strings.Join(missing, "; "))
	}
	return nil
}

func describe(a authorizationv1.ResourceAttributes) string {
	resource := a.Resource
	if a.Group != "" {
		resource += "." + a.Group
	}
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	if a.Name != "" {
		resource += " " + a.Name
	}
	if a.Namespace != "" {
		resource += " in namespace " + a.Namespace
	}
	return a.Verb + " " + resource
}

// verifySettle is how long switchboard must keep failing before join
// believes it: its caches of Clusters and Secrets, and its probe of the
// member, catch up with join's writes within moments.
var verifySettle = 5 * time.Second

// verifyThroughHub makes a request to the member through the hub's proxy
// path as the caller. It waits while switchboard has not seen the Cluster
// yet, up to VerifyTimeout; any other failure is final once it has lasted
// verifySettle. Each request is sent once: client-go's retries on
// Retry-After would only delay what switchboard says.
func (o *Options) verifyThroughHub(ctx context.Context) (string, error) {
	config := rest.CopyConfig(o.HubConfig)
	// Switchboard warns of an unready member on every answer, with what
	// the error join reports says too: one line per poll would bury it.
	config.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return "", err
	}
	path := kubeconfig.ProxyPath(o.Name) + "/version"
	var answered bool
	var body []byte
	var last error
	var failingSince time.Time
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		got, err := getOnce(ctx, client.Discovery().RESTClient(), path)
		switch {
		case err == nil:
			answered, body = true, got
			return true, nil
		case ctx.Err() != nil:
			// The wait ran out during this request; the answer before
			// it says more.
			return false, nil //nolint:nilerr // the error before this one is reported.
		}
		last = err
		if o.notSeenYet(err) || isStarting(err) || o.Agent != nil && isAgentAbsent(err) {
			failingSince = time.Time{}
			return false, nil
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		return time.Since(failingSince) >= verifySettle, nil
	})
	if !answered {
		if last != nil && o.Agent != nil && isAgentAbsent(last) {
			return "", fmt.Errorf("GET %s: %w; the member's Deployment %s/%s must run and reach the hub at %s "+
				"(kubectl -n %s get pods -l app.kubernetes.io/name=%s, in the member); a slow image pull needs a longer --verify-timeout",
				path, last, Namespace, names.Agent, o.Agent.HubServer, Namespace, names.Agent)
		}
		if last != nil {
			return "", fmt.Errorf("GET %s: %w", path, last)
		}
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	var info k8sversion.Info
	if err := json.Unmarshal(body, &info); err != nil || info.GitVersion == "" {
		return "", fmt.Errorf("GET %s answered something that is not a version: %.200s", path, body)
	}
	return fmt.Sprintf("GET %s through the hub answered: Kubernetes %s", path, info.GitVersion), nil
}

// getOnce GETs path once, without client-go's retries on Retry-After. An
// error answer comes back as the Status the server sent: DoRaw would
// replace its message with a generic one ("the server is currently unable
// to handle the request").
func getOnce(ctx context.Context, client rest.Interface, path string) ([]byte, error) {
	result := client.Get().AbsPath(path).MaxRetries(0).Do(ctx)
	body, err := result.Raw()
	if err != nil {
		return nil, result.Error()
	}
	return body, nil
}

// notSeenYet says whether switchboard answered that it knows no Cluster of
// this name yet: its cache has not caught up with join's write. A 404 from
// the member (an endpoint that is no Kubernetes API server) is an answer.
func (o *Options) notSeenYet(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Group == v1alpha1.GroupName && d.Kind == "clusters" && d.Name == o.Name
}

// isPolicyRefusal says whether a rule of the Cluster's identity policy
// refused the request: the caller is not let in, by design. A policy
// that cannot map the caller, or does not compile, is a failure.
func isPolicyRefusal(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), identity.RefusalMessage+"refuses the caller: rule ")
}

// verifyByProbe waits, up to VerifyTimeout, for a probe of the member that
// switchboard made as itself after since to succeed, when the Cluster's
// identity policy refused the request as the caller (refusal). The status
// says when switchboard last probed: a Ready from before join's writes
// proves nothing about them.
func (o *Options) verifyByProbe(ctx context.Context, refusal error, since time.Time) (string, error) {
	var cl *v1alpha1.Cluster
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		if cl, err = o.Switchboard.ClusterV1alpha1().Clusters().Get(ctx, o.Name, metav1.GetOptions{}); err != nil {
			return false, nil //nolint:nilerr // the last state is reported.
		}
		ready := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionReady)
		// A probe after join's writes: switchboard writes the status of a
		// probe of a new generation at once, and of the same one at least
		// every heartbeat (a minute by default).
		fresh := cl.Generation > o.generationBefore || cl.Status.LastProbeTime != nil && cl.Status.LastProbeTime.After(since)
		return fresh && ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration >= cl.Generation, nil
	})
	if err != nil {
		state := "not read"
		if cl != nil {
			if ready := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionReady); ready != nil {
				state = fmt.Sprintf("%s (%s): %s", ready.Status, ready.Reason, ready.Message)
			}
		}
		return "", fmt.Errorf("%w; and no probe switchboard made of the member since join's changes has succeeded within %s: Ready is %s", refusal, o.VerifyTimeout, state)
	}
	return fmt.Sprintf("the Cluster's identity policy refuses you (%v); switchboard's own probe reaches the member: Ready, Kubernetes %s",
		refusal, cl.Status.KubernetesVersion), nil
}

// isAgentAbsent says whether switchboard answered that no agent holds the
// Cluster's tunnel yet: its pods are still starting.
func isAgentAbsent(err error) bool {
	return apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), reach.NoAgentMessage)
}

// isStarting says whether switchboard answered that its caches are not
// synced yet.
func isStarting(err error) bool {
	return apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), "not synced")
}

// caBundle is the CA bundle a kubeconfig trusts, if any.
func caBundle(config *rest.Config, which string) ([]byte, error) {
	if config == nil {
		return nil, nil
	}
	c := rest.CopyConfig(config)
	if err := rest.LoadTLSFiles(c); err != nil {
		return nil, fmt.Errorf("reading the %s kubeconfig's certificate files: %w", which, err)
	}
	return c.CAData, nil
}
