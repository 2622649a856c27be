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

package topology

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorclient "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/artifacts/deploy"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// apiServiceName is the APIService that puts switchboard behind the hub.
const apiServiceName = names.APIService

const switchboardProcess = names.Server

func (u *upper) startSwitchboard(port int) error {
	s := u.state
	s.Switchboard.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	hubKubeconfig := filepath.Join(s.RunDir, "kubeconfig", "switchboard-hub.kubeconfig")
	if err := writeKubeconfig(hubKubeconfig, "hub", s.Hub.URL, s.Hub.PKI.CACert, s.Switchboard.PKI.HubCert, s.Switchboard.PKI.HubKey); err != nil {
		return err
	}
	audit, err := u.auditArgs(switchboardProcess, trailAuditPolicy)
	if err != nil {
		return err
	}
	s.Switchboard.AuditLog = audit.log
	_, err = u.start(switchboardProcess, append([]string{
		u.cfg.Binaries.Switchboard,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + s.Switchboard.PKI.ServingCert,
		"--tls-private-key-file=" + s.Switchboard.PKI.ServingKey,
		"--data-dir=" + filepath.Join(s.RunDir, "switchboard", "data"),
		"--kubeconfig=" + hubKubeconfig,
		"--authentication-kubeconfig=" + hubKubeconfig,
		"--authorization-kubeconfig=" + hubKubeconfig,
		"--profiling=false",
		// Shorter than the default minute, so that the end-to-end suite can
		// show in reasonable time that proxied watches outlive it.
		"--request-timeout=" + SwitchboardRequestTimeout.String(),
	}, audit.args...))
	return err
}

// SwitchboardRequestTimeout is switchboard's --request-timeout in the topology.
const SwitchboardRequestTimeout = 30 * time.Second

// ProbeInterval is switchboard's --cluster-probe-interval in the topology.
const ProbeInterval = 2 * time.Second

// registerSwitchboard makes the hub objects an aggregated server needs,
// as an administrator installing it would: the namespace, a Service (an
// ExternalName to localhost, since the server runs on loopback), RBAC for
// delegated authentication and authorization, and the APIService with the
// serving CA as caBundle. Then it waits for the APIService to be Available.
func (u *upper) registerSwitchboard(ctx context.Context) error {
	s := u.state
	client, err := s.Hub.Client()
	if err != nil {
		return err
	}
	caBundle, err := os.ReadFile(s.Switchboard.CACert)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(s.Switchboard.port())
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: switchboardHubUser}}

	objects := []func() error{
		func() error {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := client.CoreV1().Services(systemNamespace).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: serviceName},
				Spec: corev1.ServiceSpec{
					Type:         corev1.ServiceTypeExternalName,
					ExternalName: "localhost",
					Ports:        []corev1.ServicePort{{Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "switchboard:auth-delegator"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
				Subjects:   subject,
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := client.RbacV1().RoleBindings(metav1.NamespaceSystem).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "switchboard:extension-apiserver-authentication-reader"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
				Subjects:   subject,
			}, metav1.CreateOptions{})
			return err
		},
		func() error { return createAdmissionReader(ctx, client, subject) },
		func() error { return createCredentialsReader(ctx, client, subject) },
		func() error { return createUserRoles(ctx, client) },
		func() error {
			agg, err := hubAggregator(s)
			if err != nil {
				return err
			}
			_, err = agg.ApiregistrationV1().APIServices().Create(ctx, &apiregistrationv1.APIService{
				ObjectMeta: metav1.ObjectMeta{Name: apiServiceName},
				Spec: apiregistrationv1.APIServiceSpec{
					Service:              &apiregistrationv1.ServiceReference{Namespace: systemNamespace, Name: serviceName, Port: ptr(int32(port))},
					Group:                v1alpha1.GroupName,
					Version:              "v1alpha1",
					CABundle:             caBundle,
					GroupPriorityMinimum: 1000,
					VersionPriority:      100,
				},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objects {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("registering switchboard with the hub: %w", err)
		}
	}
	return waitFor(ctx, s.process(switchboardProcess), "the APIService "+apiServiceName, s.APIServiceAvailable)
}

// createUserRoles installs the ClusterRoles and ClusterRoleBindings for
// users that the install manifests carry (artifacts/deploy/base/user-roles.yaml),
// as an administrator who installs from artifacts/deploy has them.
func createUserRoles(ctx context.Context, client kubernetes.Interface) error {
	data, err := deploy.Files.ReadFile("base/user-roles.yaml")
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var typeMeta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &typeMeta); err != nil {
			return fmt.Errorf("reading the user roles of artifacts/deploy: %w", err)
		}
		switch typeMeta.Kind {
		case "":
			continue // the comment at the top
		case "ClusterRole":
			var role rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
				return fmt.Errorf("reading the user roles of artifacts/deploy: %w", err)
			}
			if _, err := client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		case "ClusterRoleBinding":
			var binding rbacv1.ClusterRoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &binding); err != nil {
				return fmt.Errorf("reading the user roles of artifacts/deploy: %w", err)
			}
			if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		default:
			return fmt.Errorf("the user roles of artifacts/deploy hold a %s, which the topology does not create", typeMeta.Kind)
		}
	}
	return nil
}

// createAdmissionReader lets switchboard read what its admission plugins and
// priority-and-fairness filter watch on the hub.
func createAdmissionReader(ctx context.Context, client kubernetes.Interface, subject []rbacv1.Subject) error {
	name := "switchboard:apiserver"
	_, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"flowcontrol.apiserver.k8s.io"}, Resources: []string{"flowschemas", "prioritylevelconfigurations"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
			// Events about Clusters (cluster-scoped, so recorded in default).
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	return err
}

// createCredentialsReader lets switchboard watch the credentials Secrets in
// its own namespace, and no others, and hold its leader election Lease there.
func createCredentialsReader(ctx context.Context, client kubernetes.Interface, subject []rbacv1.Subject) error {
	name := "switchboard:credentials-reader"
	_, err := client.RbacV1().Roles(systemNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = client.RbacV1().RoleBindings(systemNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	return err
}

// joinMember joins a member as kubectl switchboard join does: an
// impersonate-only identity in the member, its token in a hub Secret, the
// Cluster on the hub, and a request through the hub to check it.
func (u *upper) joinMember(ctx context.Context, m *Cluster) error {
	s := u.state
	memberConfig, err := m.RESTConfig()
	if err != nil {
		return err
	}
	hubConfig, err := s.Hub.RESTConfig()
	if err != nil {
		return err
	}
	_, err = join.Join(ctx, join.Options{
		Name:          m.Name,
		MemberConfig:  memberConfig,
		HubConfig:     hubConfig,
		TokenTimeout:  readyTimeout,
		VerifyTimeout: readyTimeout,
	})
	if err != nil {
		return fmt.Errorf("joining %s: %w", m.Name, err)
	}
	return nil
}

func hubAggregator(s *State) (aggregatorclient.Interface, error) {
	config, err := s.Hub.RESTConfig()
	if err != nil {
		return nil, err
	}
	return aggregatorclient.NewForConfig(config)
}

// APIServiceAvailable checks the hub's view of switchboard.
func (s *State) APIServiceAvailable(ctx context.Context) error {
	agg, err := hubAggregator(s)
	if err != nil {
		return err
	}
	svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, apiServiceName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range svc.Status.Conditions {
		if c.Type == apiregistrationv1.Available {
			if c.Status == apiregistrationv1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("APIService %s is not Available: %s: %s", apiServiceName, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("APIService %s has no Available condition yet", apiServiceName)
}

func (sb *Switchboard) port() string {
	return sb.URL[len("https://127.0.0.1:"):]
}

func ptr[T any](v T) *T { return &v }

// SetAPIServiceCABundle replaces the caBundle of switchboard's APIService,
// as an administrator rotating switchboard's serving CA does.
func (s *State) SetAPIServiceCABundle(ctx context.Context, caBundle []byte) error {
	agg, err := hubAggregator(s)
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, apiServiceName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Spec.CABundle = caBundle
		_, err = agg.ApiregistrationV1().APIServices().Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
}
