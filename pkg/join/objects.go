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
	"io"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	admissionac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	clusterac "github.com/switchboard-io/switchboard/pkg/generated/applyconfiguration/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// fieldManager owns the fields join applies, in the member and on the hub.
const fieldManager = "kubectl-switchboard-join"

// placeholder stands for data join only learns when it runs.
const placeholder = "<filled in by join>"

// Where an object lives.
const (
	inMember = "member"
	onHub    = "hub"
)

// applyConfiguration is a client-go apply configuration.
type applyConfiguration interface {
	runtime.ApplyConfiguration
	GetAPIVersion() *string
	GetKind() *string
	GetName() *string
	GetNamespace() *string
}

// object is one object that join applies, --dry-run=client prints and
// unjoin deletes.
type object struct {
	// where is inMember or onHub.
	where  string
	config applyConfiguration
	// usedAsFound: when it exists without switchboard's label, join uses it
	// as it is, and neither changes nor deletes it, instead of refusing it.
	usedAsFound bool
	// exact are top-level fields, maps or undeclared, that must hold what
	// config declares and nothing else; join removes the rest, which
	// apply leaves to the field managers that set it.
	exact []string
	// immutable are top-level fields that cannot change in place: join
	// replaces the object when they differ.
	immutable []string
	// agent marks the objects of a tunnelled member's switchboard-agent.
	agent bool
	// defaulted: the API server fills the items of this object's lists
	// with defaults, so join compares them item by item (see covers).
	defaulted bool
	// guard marks the member's ValidatingAdmissionPolicy and its binding
	// (see guard.go).
	guard bool
}

// declaration is what join declares for one Cluster.
type declaration struct {
	name, endpoint, hubNamespace string
	insecure                     bool
	connection                   v1alpha1.Connection
	// cred is the member's token; nil until join has it (a plan, unjoin),
	// and the hub Secret holds placeholders.
	cred *Credential
	// agent, when set, adds the switchboard-agent's objects.
	agent *agentDeclaration
	// identity, when set, is the Cluster's identity policy.
	identity *identity.Policy
	// guard, when set, adds the policy that guards the member's objects.
	guard *guardDeclaration
}

// objects declares what join sets up for a Cluster, in the order it
// applies them; rollbacks and unjoin go the other way, but for the guard,
// which comes first in both. The Cluster comes last, once everything it
// needs is in place.
func objects(d declaration) []object {
	name, endpoint, hubNamespace, cred := d.name, d.endpoint, d.hubNamespace, d.cred
	if hubNamespace == "" {
		hubNamespace = DefaultHubNamespace
	}
	labels := map[string]string{ManagedByLabel: ManagedByValue}
	hubSecret := corev1ac.Secret(SecretName(name), hubNamespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque)
	if cred == nil {
		hubSecret.WithStringData(map[string]string{
			v1alpha1.SecretKeyToken:    placeholder + " (the token of the member's " + TokenSecretPrefix + "* Secret)",
			v1alpha1.SecretKeyCABundle: placeholder + " (the CA bundle of the member kubeconfig)",
		})
	} else {
		hubSecret.WithData(map[string][]byte{v1alpha1.SecretKeyToken: cred.Token, v1alpha1.SecretKeyCABundle: cred.CACert})
	}
	clusterSpec := clusterac.ClusterSpec().
		WithEndpoint(endpoint).
		WithCredentialsSecretRef(clusterac.SecretReference().WithName(SecretName(name))).
		WithInsecureSkipTLSVerify(d.insecure)
	if d.connection != "" {
		// Declared only when asked for: a join that does not say keeps
		// the Cluster's connection, and a new Cluster defaults to Direct.
		clusterSpec.WithConnection(d.connection)
	}
	if d.identity != nil {
		clusterSpec.WithIdentity(identityConfig(d.identity))
	}
	objs := []object{
		{where: inMember, config: corev1ac.Namespace(Namespace).WithLabels(labels), usedAsFound: true},
		{where: inMember, config: corev1ac.ServiceAccount(ServiceAccountName, Namespace).WithLabels(labels)},
		// Impersonation and nothing else: of users, groups, service
		// accounts, UIDs and every user extra. Impersonating an extra is
		// authorized as userextras/<key>, and RBAC has no "userextras/*"
		// wildcard (only "*" and "*/<subresource>"), so the second rule
		// names every resource of authentication.k8s.io. With the
		// impersonate verb alone that is uids and userextras/<any key>: the
		// constrained impersonation modes of Kubernetes 1.35+ use other
		// verbs (impersonate:user-info, impersonate-on:...), which this role
		// does not grant. An aggregation rule would replace the rules.
		{where: inMember, exact: []string{"aggregationRule"}, config: rbacac.ClusterRole(ClusterRoleName).WithLabels(labels).WithRules(
			rbacac.PolicyRule().WithAPIGroups("").WithResources("users", "groups", "serviceaccounts").WithVerbs("impersonate"),
			rbacac.PolicyRule().WithAPIGroups("authentication.k8s.io").WithResources("*").WithVerbs("impersonate"),
		)},
		{where: inMember, immutable: []string{"roleRef"}, config: rbacac.ClusterRoleBinding(ClusterRoleName).WithLabels(labels).
			WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(ClusterRoleName)).
			WithSubjects(rbacac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(ServiceAccountName).WithNamespace(Namespace))},
		// The token Secret, which the member's token controller fills. Its
		// name is generated, so join creates it (apply needs a name).
		{where: inMember, config: (&corev1ac.SecretApplyConfiguration{}).WithAPIVersion("v1").WithKind("Secret").
			WithGenerateName(TokenSecretPrefix).WithNamespace(Namespace).WithLabels(labels).
			WithAnnotations(map[string]string{corev1.ServiceAccountNameKey: ServiceAccountName}).
			WithType(corev1.SecretTypeServiceAccountToken)},
		// No data but the credential: switchboard refuses a client
		// certificate beside the token.
		{where: onHub, config: hubSecret, exact: []string{"data"}},
	}
	if d.agent != nil {
		objs = append(objs, agentObjects(name, hubNamespace, d.agent, labels)...)
	}
	if d.guard != nil {
		objs = append(guardObjects(d.guard, objs, labels), objs...)
	}
	return append(objs, object{where: onHub, config: clusterac.Cluster(name).WithLabels(labels).WithSpec(clusterSpec)})
}

// identityConfig is the apply configuration of an identity policy.
func identityConfig(p *identity.Policy) *clusterac.IdentityPolicyApplyConfiguration {
	out := clusterac.IdentityPolicy()
	for _, r := range p.Rules {
		rule := clusterac.IdentityRule().WithExpression(r.Expression)
		if r.Message != "" {
			rule.WithMessage(r.Message)
		}
		out.WithRules(rule)
	}
	if p.Username != "" {
		out.WithUsername(p.Username)
	}
	if p.UID != "" {
		out.WithUID(p.UID)
	}
	if p.Groups != "" {
		out.WithGroups(p.Groups)
	}
	for _, x := range p.Extra {
		out.WithExtra(clusterac.IdentityExtra().WithKey(x.Key).WithValueExpression(x.ValueExpression))
	}
	return out
}

// PlannedObject is one object join would apply, and where.
type PlannedObject struct {
	// Where is "member" or "hub".
	Where  string
	Object runtime.ApplyConfiguration
}

// Plan lists the objects Join applies, with the tokens, and the user the
// guard lets through, left as placeholders. With agent, the member is
// reached through a tunnel, and the plan holds the agent's objects. The
// guard is applied only where the member serves admission policies.
func Plan(name, endpoint, hubNamespace string, insecure bool, agent *Agent, policy *identity.Policy) []PlannedObject {
	d := declaration{
		name: name, endpoint: endpoint, hubNamespace: hubNamespace, insecure: insecure, identity: policy,
		guard: &guardDeclaration{joiner: placeholder + " (the user of the member kubeconfig)"},
	}
	if agent != nil {
		d.connection, d.agent = v1alpha1.ConnectionTunnel, &agentDeclaration{Agent: *agent}
	}
	var planned []PlannedObject
	for _, obj := range objects(d) {
		planned = append(planned, PlannedObject{Where: obj.where, Object: obj.config})
	}
	return planned
}

// WriteYAML prints planned objects as a YAML stream, each headed by where
// it goes.
func WriteYAML(w io.Writer, planned []PlannedObject) error {
	for i, p := range planned {
		data, err := yaml.Marshal(p.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := fmt.Fprintln(w, "---"); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "# in the %s cluster\n%s", p.Where, data); err != nil {
			return err
		}
	}
	return nil
}

// generated says whether the object's name is generated: the token Secret.
func (o object) generated() bool { return o.config.GetName() == nil }

func (o object) kind() string { return ptr.Deref(o.config.GetKind(), "") }

// resource is the object's API resource: the plural of its kind.
func (o object) resource() schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(ptr.Deref(o.config.GetAPIVersion(), ""))
	plural := strings.ToLower(o.kind())
	if base, ok := strings.CutSuffix(plural, "y"); ok {
		plural = base + "ie"
	}
	return gv.WithResource(plural + "s")
}

// String names the object as join's changes do: "Kind namespace/name" or
// "Kind name".
func (o object) String() string {
	name := ptr.Deref(o.config.GetName(), TokenSecretPrefix+"*")
	if ns := ptr.Deref(o.config.GetNamespace(), ""); ns != "" {
		name = ns + "/" + name
	}
	return o.kind() + " " + name
}

// inErrors names the object in errors, which say where it is.
func (o object) inErrors() string {
	if o.where == onHub {
		return o.String() + " on the hub"
	}
	return o.String()
}

// inReports names the object in what rollbacks and unjoin did: a Secret
// says it is on the hub; a Cluster is always there.
func (o object) inReports() string {
	if o.kind() == "Cluster" {
		return o.String()
	}
	return o.inErrors()
}

// clients reach the member and the hub. member is nil when unjoin leaves
// the member alone.
type clients struct {
	member, hub kubernetes.Interface
	sb          clientset.Interface
}

// resource is one object in one cluster, read and written through its typed
// client. Configurations are given as their JSON maps.
type resource interface {
	get(ctx context.Context) (metav1.Object, error)
	apply(ctx context.Context, config map[string]any, opts metav1.ApplyOptions) error
	create(ctx context.Context, config map[string]any, opts metav1.CreateOptions) error
	mergePatch(ctx context.Context, patch map[string]any, opts metav1.PatchOptions) error
	delete(ctx context.Context, opts metav1.DeleteOptions) error
}

// target binds obj to its cluster.
func (c clients) target(obj object) *target {
	return &target{object: obj, resource: c.resource(obj)}
}

func (c clients) resource(obj object) resource {
	name, ns := ptr.Deref(obj.config.GetName(), ""), ptr.Deref(obj.config.GetNamespace(), "")
	in := c.member
	if obj.where == onHub {
		in = c.hub
	}
	switch obj.config.(type) {
	case *corev1ac.NamespaceApplyConfiguration:
		return typed(c.member.CoreV1().Namespaces(), name)
	case *corev1ac.ServiceAccountApplyConfiguration:
		return typed(in.CoreV1().ServiceAccounts(ns), name)
	case *rbacac.ClusterRoleApplyConfiguration:
		return typed(in.RbacV1().ClusterRoles(), name)
	case *rbacac.ClusterRoleBindingApplyConfiguration:
		return typed(in.RbacV1().ClusterRoleBindings(), name)
	case *clusterac.ClusterApplyConfiguration:
		return typed(c.sb.ClusterV1alpha1().Clusters(), name)
	case *appsv1ac.DeploymentApplyConfiguration:
		return typed(c.member.AppsV1().Deployments(ns), name)
	case *admissionac.ValidatingAdmissionPolicyApplyConfiguration:
		return typed(c.member.AdmissionregistrationV1().ValidatingAdmissionPolicies(), name)
	case *admissionac.ValidatingAdmissionPolicyBindingApplyConfiguration:
		return typed(c.member.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), name)
	}
	// A *corev1ac.SecretApplyConfiguration.
	return typed(in.CoreV1().Secrets(ns), name)
}

// typedClient is what client-go's typed clients offer for objects of type
// T with apply configurations A.
type typedClient[T metav1.Object, A any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Apply(ctx context.Context, config *A, opts metav1.ApplyOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

type typedResource[T metav1.Object, A any] struct {
	client typedClient[T, A]
	name   string
}

func typed[T metav1.Object, A any](client typedClient[T, A], name string) resource {
	return typedResource[T, A]{client: client, name: name}
}

func (r typedResource[T, A]) get(ctx context.Context) (metav1.Object, error) {
	obj, err := r.client.Get(ctx, r.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj, nil
}

func (r typedResource[T, A]) apply(ctx context.Context, config map[string]any, opts metav1.ApplyOptions) error {
	var ac A
	if err := convert(config, &ac); err != nil {
		return err
	}
	_, err := r.client.Apply(ctx, &ac, opts)
	return err
}

// create makes the object, and fails if one of its name exists: what join
// read as absent and someone made since is not join's.
func (r typedResource[T, A]) create(ctx context.Context, config map[string]any, opts metav1.CreateOptions) error {
	obj := reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T)
	if err := convert(config, obj); err != nil {
		return err
	}
	_, err := r.client.Create(ctx, obj, opts)
	return err
}

func (r typedResource[T, A]) mergePatch(ctx context.Context, patch map[string]any, opts metav1.PatchOptions) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = r.client.Patch(ctx, r.name, types.MergePatchType, data, opts)
	return err
}

func (r typedResource[T, A]) delete(ctx context.Context, opts metav1.DeleteOptions) error {
	return r.client.Delete(ctx, r.name, opts)
}

// convert turns from into to through JSON: an object or a configuration
// into its map, and back.
func convert(from, to any) error {
	data, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, to)
}

// Comparing what is declared with what is there, as JSON maps.

// covers says whether have holds every field of declared: applying it
// would change nothing. A field that have lacks counts as its zero value,
// which omitempty leaves out. Lists must be equal, unless elementwise:
// then have's list must be as long, and each item cover declared's, as
// for lists whose items the API server fills with defaults (a
// Deployment's containers).
func covers(have, declared map[string]any, elementwise bool) bool {
	for k, d := range declared {
		if !coversValue(have[k], d, elementwise) {
			return false
		}
	}
	return true
}

func coversValue(have, declared any, elementwise bool) bool {
	switch d := declared.(type) {
	case map[string]any:
		hm, _ := have.(map[string]any)
		return covers(hm, d, elementwise)
	case []any:
		if !elementwise {
			break
		}
		hl, _ := have.([]any)
		if len(hl) != len(d) {
			return false
		}
		for i := range d {
			if !coversValue(hl[i], d[i], elementwise) {
				return false
			}
		}
		return true
	}
	return isZero(declared) && isZero(have) || reflect.DeepEqual(declared, have)
}

func isZero(v any) bool {
	rv := reflect.ValueOf(v)
	return v == nil || rv.IsZero() || (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0
}

// extras is the JSON merge patch that removes what have's exact fields hold
// beyond declared; empty when there is nothing to remove.
func extras(declared, have map[string]any, exact []string) map[string]any {
	patch := map[string]any{}
	for _, f := range exact {
		dm, declaredToo := declared[f].(map[string]any)
		if !declaredToo && !isZero(have[f]) {
			patch[f] = nil
		}
		hm, _ := have[f].(map[string]any)
		nulls := map[string]any{}
		for k := range hm {
			if _, ok := dm[k]; declaredToo && !ok {
				nulls[k] = nil
			}
		}
		if len(nulls) > 0 {
			patch[f] = nulls
		}
	}
	return patch
}

// previous is declared with the values that have holds, the exact fields
// whole: applying it puts back what join changed.
func previous(declared, have map[string]any, exact []string) map[string]any {
	out := pick(declared, have)
	for _, f := range exact {
		if v, ok := have[f]; ok {
			out[f] = v
		}
	}
	return out
}

// pick is have's values of the fields of declared.
func pick(declared, have map[string]any) map[string]any {
	out := map[string]any{}
	for k, d := range declared {
		dm, dIsMap := d.(map[string]any)
		if hm, hIsMap := have[k].(map[string]any); dIsMap && hIsMap {
			out[k] = pick(dm, hm)
		} else if h, found := have[k]; found {
			out[k] = h
		}
	}
	return out
}
