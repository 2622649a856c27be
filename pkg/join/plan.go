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
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// placeholder stands for data join only learns when it runs.
const placeholder = "<filled in by join>"

// PlannedObject is one object join would apply, and where.
type PlannedObject struct {
	// Where is "member" or "hub".
	Where  string
	Object runtime.Object
}

// Plan lists the objects Join applies, with the token left as a placeholder.
func Plan(name, endpoint, hubNamespace string, insecure bool) []PlannedObject {
	if hubNamespace == "" {
		hubNamespace = DefaultHubNamespace
	}
	ns, sa, role, binding := MemberObjects()
	ns.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
	sa.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}
	role.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"}
	binding.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"}
	token := TokenSecret()
	token.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}

	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: managedMeta(SecretName(name), hubNamespace),
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{
			v1alpha1.SecretKeyToken:    placeholder + " (the token of the member's " + TokenSecretPrefix + "* Secret)",
			v1alpha1.SecretKeyCABundle: placeholder + " (the CA bundle of the member kubeconfig)",
		},
	}
	cluster := &v1alpha1.Cluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Cluster"},
		ObjectMeta: managedMeta(name, ""),
		Spec: v1alpha1.ClusterSpec{
			Endpoint:              endpoint,
			CredentialsSecretRef:  v1alpha1.SecretReference{Name: SecretName(name)},
			InsecureSkipTLSVerify: insecure,
		},
	}
	return []PlannedObject{
		{"member", ns}, {"member", sa}, {"member", role}, {"member", binding}, {"member", token},
		{"hub", secret}, {"hub", cluster},
	}
}

// WriteYAML prints planned objects as a YAML stream, each headed by where
// it goes.
func WriteYAML(w io.Writer, objects []PlannedObject) error {
	for i, p := range objects {
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
