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

// Package install renders the install manifests of artifacts/deploy with a
// serving pair and the APIService caBundle filled in.
package install

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/artifacts/deploy"
)

const (
	// Namespace is where the manifests install switchboard.
	Namespace = "switchboard-system"
	// ServingSecretName is the Secret the Deployment mounts its serving pair from.
	ServingSecretName = "switchboard-apiserver-serving"
	// ServiceName is the Service the APIService points at.
	ServiceName = "switchboard-apiserver"
)

// ServingDNSNames are the names the hub's aggregator may dial.
var ServingDNSNames = []string{
	ServiceName + "." + Namespace + ".svc",
	ServiceName + "." + Namespace + ".svc.cluster.local",
}

// Render renders one variant of the embedded kustomization, as kubectl
// kustomize artifacts/deploy/<variant> does.
func Render(variant string) ([]byte, error) {
	if !slices.Contains(deploy.Variants, variant) {
		return nil, fmt.Errorf("unknown variant %q: use one of %s", variant, strings.Join(deploy.Variants, ", "))
	}
	memFS := filesys.MakeFsInMemory()
	err := fs.WalkDir(deploy.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := deploy.Files.ReadFile(path)
		if err != nil {
			return err
		}
		return memFS.WriteFile("/"+path, data)
	})
	if err != nil {
		return nil, err
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(memFS, "/"+variant)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", variant, err)
	}
	return resources.AsYaml()
}

// Manifests renders a variant with the serving pair as a Secret and its CA
// in the APIService's caBundle.
func Manifests(variant string, pair *ServingPair) ([]byte, error) {
	rendered, err := Render(variant)
	if err != nil {
		return nil, err
	}
	docs, err := kio.FromBytes(rendered)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	filled := false
	for _, doc := range docs {
		if doc.GetKind() == "APIService" {
			if err := doc.PipeE(kyaml.LookupCreate(kyaml.MappingNode, "spec"),
				kyaml.SetField("caBundle", kyaml.NewStringRNode(base64.StdEncoding.EncodeToString(pair.CACert)))); err != nil {
				return nil, err
			}
			filled = true
		}
		text, err := doc.String()
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.WriteString(text)
	}
	if !filled {
		return nil, fmt.Errorf("variant %s has no APIService to fill", variant)
	}
	secret, err := yaml.Marshal(ServingSecret(pair))
	if err != nil {
		return nil, err
	}
	out.WriteString("---\n")
	out.Write(secret)
	return []byte(out.String()), nil
}

// ServingSecret is the Secret the Deployment mounts: the pair, and the CA
// that signed it (so a later install can keep using it).
func ServingSecret(pair *ServingPair) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServingSecretName,
			Namespace: Namespace,
			Labels:    map[string]string{"app.kubernetes.io/name": "switchboard", "app.kubernetes.io/part-of": "switchboard"},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pair.Cert,
			corev1.TLSPrivateKeyKey: pair.Key,
			"ca.crt":                pair.CACert,
		},
	}
}
