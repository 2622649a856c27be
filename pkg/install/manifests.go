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
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/version"
)

const (
	// Namespace is where the manifests install switchboard.
	Namespace = names.Namespace
	// ServingSecretName is the Secret the Deployment mounts its serving pair from.
	ServingSecretName = names.Server + "-serving"
	// ServiceName is the Service the APIService points at.
	ServiceName = names.Server
	// ContainerName is the server's container in the Deployment.
	ContainerName = names.Server
	// ImageRepository is where switchboard-apiserver images are published;
	// artifacts/deploy/base/kustomization.yaml names it too.
	ImageRepository = "ghcr.io/switchboard-io/switchboard-apiserver"
)

// ServingSecretComment heads the serving Secret in what Manifests renders.
const ServingSecretComment = `# This Secret holds the private key of switchboard's serving certificate
# (tls.key): whoever has it and can intercept the hub's traffic to switchboard
# can pose as switchboard and read every request sent through it. Apply it,
# keep it only on the hub as a Secret, and do not commit this file.
`

// DefaultImage is the switchboard-apiserver image of this build's version:
// ImageRepository tagged with the gitVersion the binary reports.
func DefaultImage() string {
	return ImageRepository + ":" + version.Get().GitVersion
}

// CheckImage rejects what cannot be a container image reference: nothing,
// or text with white space.
func CheckImage(image string) error {
	if image == "" || strings.ContainsAny(image, " \t\r\n") {
		return fmt.Errorf("%q is not a container image reference", image)
	}
	return nil
}

// ServingDNSNames are the names the hub's aggregator may dial.
var ServingDNSNames = []string{
	names.ServiceDNSName,
	names.ServiceDNSName + ".cluster.local",
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

// Manifests renders a variant with the serving pair as a Secret (headed by
// ServingSecretComment), its CA in the APIService's caBundle, and image as
// the server's container image.
func Manifests(variant string, pair *ServingPair, image string) ([]byte, error) {
	if err := CheckImage(image); err != nil {
		return nil, err
	}
	rendered, err := Render(variant)
	if err != nil {
		return nil, err
	}
	docs, err := kio.FromBytes(rendered)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	filled, imaged := false, false
	for _, doc := range docs {
		if doc.GetKind() == "Deployment" {
			container, err := doc.Pipe(kyaml.Lookup("spec", "template", "spec", "containers", "[name="+ContainerName+"]"))
			if err != nil {
				return nil, err
			}
			if container != nil {
				if err := container.PipeE(kyaml.SetField("image", kyaml.NewStringRNode(image))); err != nil {
					return nil, err
				}
				imaged = true
			}
		}
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
	if !imaged {
		return nil, fmt.Errorf("variant %s has no Deployment with a container %s", variant, ContainerName)
	}
	secret, err := yaml.Marshal(ServingSecret(pair))
	if err != nil {
		return nil, err
	}
	out.WriteString("---\n")
	out.WriteString(ServingSecretComment)
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
