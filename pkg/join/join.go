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
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
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
}

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
func Join(ctx context.Context, o Options) (*Result, error) {
	if err := o.complete(); err != nil {
		return nil, err
	}
	if err := o.preflight(ctx); err != nil {
		return nil, err
	}

	result := &Result{}
	memberChanges, err := ensureMemberObjects(ctx, o.MemberClient, o.TokenTimeout)
	result.Changes = append(result.Changes, memberChanges...)
	if err != nil {
		return result, o.explain(err, "member")
	}
	cred, change, err := ensureToken(ctx, o.MemberClient, o.checkToken, o.TokenTimeout)
	if err != nil {
		return result, o.explain(err, "member")
	}
	result.Changes = append(result.Changes, change)

	caBundle := cred.CACert
	ca, err := memberCA(o.MemberConfig)
	if err != nil {
		return result, err
	}
	if len(ca) > 0 {
		// The CA the member kubeconfig trusts is the one for its endpoint.
		caBundle = ca
	}
	change, err = ensureHubSecret(ctx, o.HubClient, o.HubNamespace, SecretName(o.Name), map[string][]byte{
		v1alpha1.SecretKeyToken:    cred.Token,
		v1alpha1.SecretKeyCABundle: caBundle,
	})
	if err != nil {
		return result, o.explain(err, "hub")
	}
	result.Changes = append(result.Changes, change)

	change, err = o.ensureCluster(ctx)
	if err != nil {
		return result, o.explain(err, "hub")
	}
	result.Changes = append(result.Changes, change)

	result.AlreadyAuthorized = true
	for _, c := range result.Changes {
		if c.Action != Unchanged && c.Action != Kept {
			result.AlreadyAuthorized = false
		}
	}
	verified, err := o.verify(ctx)
	if err != nil {
		return result, fmt.Errorf("everything is in place, but a request through the hub to cluster %q failed: %w", o.Name, err)
	}
	result.Verified = verified
	return result, nil
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
		{Verb: "create", Resource: "namespaces"},
		{Verb: "create", Resource: "serviceaccounts", Namespace: Namespace},
		{Verb: "create", Resource: "secrets", Namespace: Namespace},
		{Verb: "delete", Resource: "secrets", Namespace: Namespace},
		{Verb: "list", Resource: "secrets", Namespace: Namespace},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "update", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "update", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		// Granting impersonation takes holding it (or escalate).
		{Verb: "impersonate", Resource: "users"},
	}
	if err := o.checkAccess(ctx, o.MemberClient, "member", memberNeeds); err != nil {
		return err
	}
	hubNeeds := []authorizationv1.ResourceAttributes{
		{Verb: "create", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "update", Resource: "secrets", Namespace: o.HubNamespace},
		{Verb: "create", Group: v1alpha1.GroupName, Resource: "clusters"},
		{Verb: "update", Group: v1alpha1.GroupName, Resource: "clusters"},
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

// ensureCluster creates or corrects the Cluster on the hub. It sets the
// fields join knows (endpoint, credentials, TLS verification) and keeps
// the others (tlsServerName, proxyURL) as the administrator set them.
func (o *Options) ensureCluster(ctx context.Context) (Change, error) {
	obj := "Cluster " + o.Name
	insecure := o.MemberConfig != nil && o.MemberConfig.Insecure
	clusters := o.Switchboard.ClusterV1alpha1().Clusters()
	existing, err := clusters.Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c := &v1alpha1.Cluster{
			ObjectMeta: managedMeta(o.Name, ""),
			Spec: v1alpha1.ClusterSpec{
				Endpoint:              o.Endpoint,
				CredentialsSecretRef:  v1alpha1.SecretReference{Name: SecretName(o.Name)},
				InsecureSkipTLSVerify: insecure,
			},
		}
		if _, err := clusters.Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return Change{}, fmt.Errorf("creating %s on the hub: %w", obj, err)
		}
		return Change{obj, Created}, nil
	case err != nil:
		return Change{}, fmt.Errorf("reading %s on the hub: %w", obj, err)
	case !isManaged(existing):
		// Made by hand (kubectl apply): its Secret may be someone else's.
		return Change{}, notOwnedError(obj + " on the hub")
	}
	want := existing.Spec
	want.Endpoint = o.Endpoint
	want.CredentialsSecretRef = v1alpha1.SecretReference{Name: SecretName(o.Name)}
	want.InsecureSkipTLSVerify = insecure
	if apiequality.Semantic.DeepEqual(existing.Spec, want) {
		return Change{obj, Unchanged}, nil
	}
	fixed := existing.DeepCopy()
	fixed.Spec = want
	if _, err := clusters.Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		return Change{}, fmt.Errorf("correcting %s on the hub: %w", obj, err)
	}
	return Change{obj, Corrected}, nil
}

// verifyThroughHub makes a request to the member through the hub's proxy
// path as the caller, retrying while switchboard's caches catch up.
func (o *Options) verifyThroughHub(ctx context.Context) (string, error) {
	client, err := kubernetes.NewForConfig(o.HubConfig)
	if err != nil {
		return "", err
	}
	path := kubeconfig.ProxyPath(o.Name) + "/version"
	var last error
	var body []byte
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		body, last = client.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		return last == nil, nil
	})
	if err != nil {
		if last != nil {
			return "", fmt.Errorf("GET %s: %w", path, last)
		}
		return "", err
	}
	var info struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.GitVersion == "" {
		return "", fmt.Errorf("GET %s answered something that is not a version: %.200s", path, body)
	}
	return fmt.Sprintf("GET %s through the hub answered: Kubernetes %s", path, info.GitVersion), nil
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
