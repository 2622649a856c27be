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

package install

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/switchboard-io/switchboard/pkg/version"
)

func objects(t *testing.T, manifests []byte) []*unstructured.Unstructured {
	t.Helper()
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var out []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

func TestRenderVariants(t *testing.T) {
	for variant, replicas := range map[string]int64{"single": 1, "ha": 3} {
		t.Run(variant, func(t *testing.T) {
			rendered, err := Render(variant)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, obj := range objects(t, rendered) {
				kinds[obj.GetKind()]++
				if obj.GetKind() == "Deployment" {
					got, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas")
					if fmt.Sprint(got) != fmt.Sprint(replicas) {
						t.Errorf("replicas = %d, want %d", got, replicas)
					}
				}
				if obj.GetKind() == "APIService" {
					if skip, _, _ := unstructured.NestedBool(obj.Object, "spec", "insecureSkipTLSVerify"); skip {
						t.Error("the APIService skips TLS verification")
					}
				}
			}
			for _, kind := range []string{"Namespace", "ServiceAccount", "Deployment", "Service", "APIService", "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
				if kinds[kind] == 0 {
					t.Errorf("no %s in %v", kind, kinds)
				}
			}
		})
	}
	if _, err := Render("nope"); err == nil || !strings.Contains(err.Error(), "single, ha") {
		t.Errorf("unknown variant: err = %v", err)
	}
}

func TestManifestsCarryTheServingPair(t *testing.T) {
	pair, err := GenerateServingPair()
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := Manifests("single", pair, DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	var caBundle, secretCert []byte
	for _, obj := range objects(t, manifests) {
		switch obj.GetKind() {
		case "APIService":
			encoded, _, _ := unstructured.NestedString(obj.Object, "spec", "caBundle")
			if caBundle, err = base64.StdEncoding.DecodeString(encoded); err != nil {
				t.Fatal(err)
			}
		case "Secret":
			if obj.GetName() != ServingSecretName || obj.GetNamespace() != Namespace {
				t.Errorf("secret %s/%s", obj.GetNamespace(), obj.GetName())
			}
			encoded, _, _ := unstructured.NestedString(obj.Object, "data", "tls.crt")
			if secretCert, err = base64.StdEncoding.DecodeString(encoded); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(caBundle, pair.CACert) {
		t.Fatal("the caBundle is not the pair's CA")
	}
	// The serving certificate verifies, for the Service name, against the caBundle.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatal("caBundle holds no certificate")
	}
	block, _ := pem.Decode(secretCert)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ServingDNSNames {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	if _, err := tls.X509KeyPair(pair.Cert, pair.Key); err != nil {
		t.Errorf("the pair does not match: %v", err)
	}
}

// containerImage is the image of the server's container in manifests.
func containerImage(t *testing.T, manifests []byte) string {
	t.Helper()
	for _, obj := range objects(t, manifests) {
		if obj.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			if c := c.(map[string]any); c["name"] == ContainerName {
				return c["image"].(string)
			}
		}
	}
	t.Fatal("no Deployment with the server's container")
	return ""
}

func TestManifestsImage(t *testing.T) {
	pair, err := GenerateServingPair()
	if err != nil {
		t.Fatal(err)
	}
	// The kustomization publishes the image where DefaultImage looks.
	rendered, err := Render("single")
	if err != nil {
		t.Fatal(err)
	}
	if repo, _, _ := strings.Cut(containerImage(t, rendered), ":"); repo != ImageRepository {
		t.Errorf("the kustomization's image is %s, DefaultImage uses %s", repo, ImageRepository)
	}
	if want := ImageRepository + ":" + version.Get().GitVersion; DefaultImage() != want {
		t.Errorf("DefaultImage() = %s, want %s", DefaultImage(), want)
	}
	for _, variant := range []string{"single", "ha"} {
		for _, image := range []string{DefaultImage(), "registry.example/switchboard@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
			manifests, err := Manifests(variant, pair, image)
			if err != nil {
				t.Fatal(err)
			}
			if got := containerImage(t, manifests); got != image {
				t.Errorf("%s: image = %s, want %s", variant, got, image)
			}
		}
	}
	for _, bad := range []string{"", "two words", "tab\tbed"} {
		if _, err := Manifests("single", pair, bad); err == nil || !strings.Contains(err.Error(), "not a container image reference") {
			t.Errorf("image %q: err = %v", bad, err)
		}
	}
}

// The serving Secret, which holds a private key, says so on top.
func TestManifestsWarnAboutThePrivateKey(t *testing.T) {
	pair, err := GenerateServingPair()
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := Manifests("single", pair, DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(manifests), "---\n")
	commented := 0
	for _, doc := range docs {
		if strings.HasPrefix(doc, ServingSecretComment) {
			commented++
			if !strings.Contains(doc, "kind: Secret") || !strings.Contains(doc, "name: "+ServingSecretName) || !strings.Contains(doc, "tls.key: ") {
				t.Errorf("the comment heads something else than the serving Secret:\n%s", doc)
			}
		}
	}
	if commented != 1 {
		t.Errorf("%d documents carry the private key comment, want 1", commented)
	}
	if !strings.Contains(ServingSecretComment, "do not commit") || !strings.Contains(ServingSecretComment, "private key") {
		t.Errorf("the comment does not warn: %s", ServingSecretComment)
	}
}
