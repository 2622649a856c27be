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
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/validation"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

// DefaultHubNamespace holds switchboard and the credentials Secrets on the hub.
const DefaultHubNamespace = "switchboard-system"

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
	// Overwrite lets join re-point an existing Cluster at another
	// endpoint; without it, join refuses.
	Overwrite bool
	// DryRun, when set, changes nothing (see DryRun).
	DryRun DryRun

	// Clients, built from the configs when nil (tests set them).
	MemberClient kubernetes.Interface
	HubClient    kubernetes.Interface
	Switchboard  clientset.Interface
	// checkToken and verify replace the real checks in tests.
	checkToken tokenChecker
	verify     func(ctx context.Context) (string, error)
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
	var err error
	if o.MemberClient == nil {
		if o.MemberClient, err = kubernetes.NewForConfig(o.MemberConfig); err != nil {
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
		o.checkToken = selfSubjectReviewChecker(o.MemberConfig)
	}
	if o.verify == nil {
		o.verify = o.verifyThroughHub
	}
	return nil
}

func (o *Options) memberAddress() string {
	if o.MemberConfig != nil {
		return o.MemberConfig.Host
	}
	return o.Endpoint
}

func (o *Options) hubAddress() string {
	if o.HubConfig != nil {
		return o.HubConfig.Host
	}
	return "(hub)"
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
	if err := o.preflight(ctx); err != nil {
		return nil, err
	}
	existing, err := o.inspectHub(ctx)
	if err != nil {
		return nil, err
	}
	result := &Result{Warnings: o.hubAsMemberWarning(ctx)}
	w := &writer{dryRun: o.DryRun}
	if err := o.write(ctx, existing, w, result); err != nil {
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
	verified, err := o.verify(ctx)
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

// write makes the member's objects and token, then the hub Secret and the
// Cluster, recording each change in result and how to undo it in w.
func (o *Options) write(ctx context.Context, existing *hubObjects, w *writer, result *Result) error {
	memberChanges, err := ensureMemberObjects(ctx, o.MemberClient, o.TokenTimeout, w)
	result.Changes = append(result.Changes, memberChanges...)
	if err != nil {
		return o.explain(err, "member")
	}
	cred, change, err := ensureToken(ctx, o.MemberClient, o.checkToken, o.TokenTimeout, w)
	if err != nil {
		return o.explain(err, "member")
	}
	result.Changes = append(result.Changes, change)

	caBundle := cred.CACert
	ca, err := memberCA(o.MemberConfig)
	if err != nil {
		return err
	}
	if len(ca) > 0 {
		// The CA the member kubeconfig trusts is the one for its endpoint.
		caBundle = ca
	}
	change, err = ensureHubSecret(ctx, o.HubClient, existing.secret, o.HubNamespace, SecretName(o.Name), map[string][]byte{
		v1alpha1.SecretKeyToken:    cred.Token,
		v1alpha1.SecretKeyCABundle: caBundle,
	}, w)
	if err != nil {
		return o.explain(err, "hub")
	}
	result.Changes = append(result.Changes, change)

	change, err = o.ensureCluster(ctx, existing.cluster, w)
	if err != nil {
		return o.explain(err, "hub")
	}
	result.Changes = append(result.Changes, change)
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
	address := o.memberAddress()
	if which == "hub" {
		address = o.hubAddress()
	}
	if classified := classify(which, address, err); classified != nil {
		return classified
	}
	return err
}

// preflight checks, once and before changing anything, that both API
// servers answer and that the kubeconfigs may do what join does.
func (o *Options) preflight(ctx context.Context) error {
	memberNeeds := []authorizationv1.ResourceAttributes{
		// Creating, and deleting what it created when a later step fails.
		{Verb: "create", Resource: "namespaces"},
		{Verb: "delete", Resource: "namespaces"},
		{Verb: "create", Resource: "serviceaccounts", Namespace: Namespace},
		{Verb: "delete", Resource: "serviceaccounts", Namespace: Namespace},
		{Verb: "create", Resource: "secrets", Namespace: Namespace},
		{Verb: "delete", Resource: "secrets", Namespace: Namespace},
		{Verb: "list", Resource: "secrets", Namespace: Namespace},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "update", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "delete", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "update", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "delete", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		// Granting impersonation takes holding it (or escalate).
		{Verb: "impersonate", Resource: "users"},
	}
	if err := o.checkAccess(ctx, o.MemberClient, "member", memberNeeds); err != nil {
		return err
	}
	hubNeeds := []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "create", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "update", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "delete", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "get", Group: v1alpha1.GroupName, Resource: "clusters"},
		{Verb: "create", Group: v1alpha1.GroupName, Resource: "clusters"},
		{Verb: "update", Group: v1alpha1.GroupName, Resource: "clusters"},
		{Verb: "delete", Group: v1alpha1.GroupName, Resource: "clusters"},
		{Verb: "get", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: "proxy", Name: o.Name},
	}
	if err := o.checkAccess(ctx, o.HubClient, "hub", hubNeeds); err != nil {
		return err
	}
	if _, err := o.HubClient.Discovery().ServerResourcesForGroupVersion(v1alpha1.SchemeGroupVersion.String()); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the hub at %s does not serve %s: is switchboard installed and its APIService Available?", o.hubAddress(), v1alpha1.SchemeGroupVersion)
		}
		return o.explain(err, "hub")
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
		address := o.memberAddress()
		if which == "hub" {
			address = o.hubAddress()
		}
		return fmt.Errorf("the %s kubeconfig (%s) may not: %s", which, address, strings.Join(missing, "; "))
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

// ensureCluster creates or corrects the Cluster on the hub; existing is
// what inspectHub read (nil when there is none). It sets the fields join
// knows (endpoint, credentials, TLS verification) and keeps the others
// (tlsServerName, proxyURL) as the administrator set them. A conflict with
// another writer (switchboard writes the status all the time) is retried
// on a fresh read.
func (o *Options) ensureCluster(ctx context.Context, existing *v1alpha1.Cluster, w *writer) (Change, error) {
	obj := "Cluster " + o.Name
	insecure := o.MemberConfig != nil && o.MemberConfig.Insecure
	clusters := o.Switchboard.ClusterV1alpha1().Clusters()
	if existing == nil {
		c := &v1alpha1.Cluster{
			ObjectMeta: managedMeta(o.Name, ""),
			Spec: v1alpha1.ClusterSpec{
				Endpoint:              o.Endpoint,
				CredentialsSecretRef:  v1alpha1.SecretReference{Name: SecretName(o.Name)},
				InsecureSkipTLSVerify: insecure,
			},
		}
		_, err := clusters.Create(ctx, c, w.create())
		w.created(err, Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(clusters.Delete(ctx, o.Name, metav1.DeleteOptions{}))
		})
		if err != nil {
			return Change{}, fmt.Errorf("creating %s on the hub: %w", obj, err)
		}
		return w.change(obj, Created, ""), nil
	}
	wantSpec := func(spec v1alpha1.ClusterSpec) v1alpha1.ClusterSpec {
		spec.Endpoint = o.Endpoint
		spec.CredentialsSecretRef = v1alpha1.SecretReference{Name: SecretName(o.Name)}
		spec.InsecureSkipTLSVerify = insecure
		return spec
	}
	if apiequality.Semantic.DeepEqual(existing.Spec, wantSpec(existing.Spec)) {
		return Change{Object: obj, Action: Unchanged}, nil
	}
	previous := existing.Spec
	// Recorded first: an update whose outcome is unknown may have happened.
	mark := w.mark()
	w.onUndo(Change{Object: obj, Action: "restored"}, func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c, err := clusters.Get(ctx, o.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			c.Spec = previous
			_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
			return err
		})
	})
	if err := updateOnConflict(ctx, existing.DeepCopy(), func(ctx context.Context) (*v1alpha1.Cluster, error) {
		return clusters.Get(ctx, o.Name, metav1.GetOptions{})
	}, func(ctx context.Context, c *v1alpha1.Cluster) error {
		c.Spec = wantSpec(c.Spec)
		_, err := clusters.Update(ctx, c, w.update())
		return err
	}); err != nil {
		if refused(err) {
			w.keep(mark)
		}
		return Change{}, fmt.Errorf("correcting %s on the hub: %w", obj, err)
	}
	return w.change(obj, Corrected, ""), nil
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
	client, err := kubernetes.NewForConfig(o.HubConfig)
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
			return false, nil
		}
		last = err
		if o.notSeenYet(err) || isStarting(err) {
			failingSince = time.Time{}
			return false, nil
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		return time.Since(failingSince) >= verifySettle, nil
	})
	if !answered {
		if last != nil {
			return "", fmt.Errorf("GET %s: %w", path, last)
		}
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	var info struct {
		GitVersion string `json:"gitVersion"`
	}
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

// isStarting says whether switchboard answered that its caches are not
// synced yet.
func isStarting(err error) bool {
	return apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), "not synced")
}

// memberCA is the CA bundle the member kubeconfig trusts, if any.
func memberCA(config *rest.Config) ([]byte, error) {
	if config == nil {
		return nil, nil
	}
	c := rest.CopyConfig(config)
	if err := rest.LoadTLSFiles(c); err != nil {
		return nil, fmt.Errorf("reading the member kubeconfig's certificate files: %w", err)
	}
	return c.CAData, nil
}
