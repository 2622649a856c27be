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

package plugin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/switchboard-io/switchboard/pkg/install"
	"github.com/switchboard-io/switchboard/pkg/version"
)

func decodeObjects(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
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

func serverImage(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	for _, obj := range objs {
		containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			if c := c.(map[string]any); c["name"] == install.ContainerName {
				return c["image"].(string)
			}
		}
	}
	t.Fatal("no server container")
	return ""
}

// objectPath is where the hub serves obj.
func objectPath(obj *unstructured.Unstructured) string {
	gv := obj.GetAPIVersion()
	prefix := "/apis/" + gv
	if !strings.Contains(gv, "/") {
		prefix = "/api/" + gv
	}
	if obj.GetNamespace() != "" {
		prefix += "/namespaces/" + obj.GetNamespace()
	}
	return prefix + "/" + resourceOf(obj.GetKind()) + "/" + obj.GetName()
}

func resourceOf(kind string) string { return strings.ToLower(kind) + "s" }

// serveDiscovery makes the hub serve the kinds of objs.
func (h *fakeHub) serveDiscovery(objs []*unstructured.Unstructured) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for _, obj := range objs {
		gv, kind := obj.GetAPIVersion(), obj.GetKind()
		if seen[gv+kind] {
			continue
		}
		seen[gv+kind] = true
		h.resources[gv] = append(h.resources[gv], metav1.APIResource{
			Name: resourceOf(kind), Kind: kind, Namespaced: obj.GetNamespace() != "",
			Verbs: metav1.Verbs{"get", "list", "create", "update", "patch", "delete"},
		})
	}
}

func TestInstallClientDryRun(t *testing.T) {
	// The tests' binary is no release: v0.0.0-dev.
	notRelease := "is not a release (version " + version.Get().GitVersion + ")"
	for _, tc := range []struct {
		name  string
		args  []string
		image string
		// warnings must be on standard error; notWarned must not.
		warnings  []string
		notWarned string
	}{
		{"default image", []string{"--dry-run=client"}, install.ImageRepository + ":" + version.Get().GitVersion, []string{notRelease}, "deprecated"},
		{"bare --dry-run", []string{"--dry-run"}, install.DefaultImage(), []string{"--dry-run is deprecated and can be replaced with --dry-run=client.", notRelease}, ""},
		{"--image", []string{"--dry-run=client", "--image", "registry.example/sb:v9"}, "registry.example/sb:v9", nil, "is not a release"},
		{"ha", []string{"--dry-run=client", "--variant", "ha"}, install.DefaultImage(), []string{notRelease}, "deprecated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newFakeHub(t)
			stdout, stderr, err := hub.run(append([]string{"install"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			if n := hub.hits(""); n != 0 {
				t.Errorf("a client dry run made %d requests to the hub", n)
			}
			objs := decodeObjects(t, stdout)
			if got := serverImage(t, objs); got != tc.image {
				t.Errorf("image = %s, want %s", got, tc.image)
			}
			for _, want := range tc.warnings {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if tc.notWarned != "" && strings.Contains(stderr, tc.notWarned) {
				t.Errorf("stderr has %q:\n%s", tc.notWarned, stderr)
			}
			// The private key is in the output, and both the output and
			// standard error say so.
			if !strings.Contains(stderr, "Warning: the output holds the private key of switchboard's serving certificate") {
				t.Errorf("no private key warning on stderr:\n%s", stderr)
			}
			if !strings.Contains(stdout, "---\n"+install.ServingSecretComment+"apiVersion: v1\n") {
				t.Error("the serving Secret is not headed by the private key comment")
			}
		})
	}
	if _, _, err := runPlugin(t, "install", "--dry-run=client", "--image", "two words"); err == nil || !strings.Contains(err.Error(), `--image: "two words" is not a container image reference`) {
		t.Errorf("a bad --image: err = %v", err)
	}
	if _, _, err := runPlugin(t, "install", "--dry-run=client", "--variant", "triple"); err == nil || !strings.Contains(err.Error(), `--variant must be one of single, ha, not "triple"`) {
		t.Errorf("a bad --variant: err = %v", err)
	}
}

func TestInstallApply(t *testing.T) {
	pair, err := install.GenerateServingPair()
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := install.Manifests("single", pair, install.DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, string(manifests))

	// An earlier install: the namespace as install applies it, the
	// Service changed since, and the serving Secret.
	existing := func(h *fakeHub) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, obj := range objs {
			switch obj.GetKind() {
			case "Namespace":
				h.objects[objectPath(obj)] = obj.DeepCopy().Object
			case "Service":
				changed := obj.DeepCopy()
				changed.SetLabels(map[string]string{"edited": "by hand"})
				h.objects[objectPath(obj)] = changed.Object
			}
		}
		secret := install.ServingSecret(pair)
		data, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
		if err != nil {
			h.t.Fatal(err)
		}
		h.objects["/api/v1/namespaces/"+install.Namespace+"/secrets/"+install.ServingSecretName] = data
	}

	for _, tc := range []struct {
		name     string
		args     []string
		existing bool
		dryRun   string
		// lines are lines the output must hold.
		lines []string
	}{
		{
			name: "server dry run on a new hub", args: []string{"--dry-run=server"}, dryRun: "All",
			lines: []string{
				"namespace/switchboard-system created (server dry run)",
				"deployment.apps/switchboard-apiserver created (server dry run); not validated: namespace switchboard-system does not exist yet",
				"apiservice.apiregistration.k8s.io/v1alpha1.cluster.switchboard.io created (server dry run)",
				"Server dry run: the hub accepted the objects above and changed nothing.",
			},
		},
		{
			name: "server dry run over an install", args: []string{"--dry-run=server"}, existing: true, dryRun: "All",
			lines: []string{
				"namespace/switchboard-system unchanged (server dry run)",
				"service/switchboard-apiserver configured (server dry run)",
				"deployment.apps/switchboard-apiserver created (server dry run)",
				"secret/switchboard-apiserver-serving unchanged (server dry run)",
			},
		},
		{
			name: "apply", args: nil, existing: true,
			lines: []string{
				"namespace/switchboard-system unchanged",
				"service/switchboard-apiserver configured",
				"deployment.apps/switchboard-apiserver created",
				"Switchboard is installed; kubectl get apiservice v1alpha1.cluster.switchboard.io shows when it is Available.",
			},
		},
		{name: "--dry-run=none applies", args: []string{"--dry-run=none"}, existing: true, lines: []string{"service/switchboard-apiserver configured"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newFakeHub(t)
			hub.serveDiscovery(objs)
			if tc.existing {
				existing(hub)
			}
			stdout, stderr, err := hub.run(append([]string{"install"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\nstdout: %s\nstderr: %s", err, stdout, stderr)
			}
			for _, want := range tc.lines {
				if !strings.Contains("\n"+stdout, "\n"+want+"\n") {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			// Every object was applied, with the dry-run option asked for.
			patches := 0
			for _, r := range hub.requests {
				method, rest, _ := strings.Cut(r, " ")
				if method != "PATCH" {
					continue
				}
				patches++
				_, query, _ := strings.Cut(rest, "?")
				values, err := url.ParseQuery(query)
				if err != nil {
					t.Fatal(err)
				}
				if values.Get("dryRun") != tc.dryRun || values.Get("fieldManager") != installFieldManager || values.Get("force") != "true" {
					t.Errorf("%s: dryRun %q, fieldManager %q, force %q", r, values.Get("dryRun"), values.Get("fieldManager"), values.Get("force"))
				}
			}
			if patches != len(objs) {
				t.Errorf("%d objects applied, want %d", patches, len(objs))
			}
			// Over an install, the serving pair found is kept.
			var apiService struct {
				Spec struct {
					CABundle string `json:"caBundle"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(hub.patches["/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.cluster.switchboard.io"], &apiService); err != nil {
				t.Fatal(err)
			}
			caBundle, _ := base64.StdEncoding.DecodeString(apiService.Spec.CABundle)
			if kept := bytes.Equal(caBundle, pair.CACert); kept != tc.existing {
				t.Errorf("the caBundle is the earlier install's: %v, want %v", kept, tc.existing)
			}
			var secret corev1.Secret
			if err := json.Unmarshal(hub.patches["/api/v1/namespaces/switchboard-system/secrets/switchboard-apiserver-serving"], &secret); err != nil {
				t.Fatal(err)
			}
			if kept := bytes.Equal(secret.Data[corev1.TLSPrivateKeyKey], pair.Key); kept != tc.existing {
				t.Errorf("the serving key is the earlier install's: %v, want %v", kept, tc.existing)
			}
		})
	}
}

// A server dry run goes through every object and reports every refusal.
func TestInstallServerDryRunReportsEveryRefusal(t *testing.T) {
	pair, err := install.GenerateServingPair()
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := install.Manifests("single", pair, install.DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, string(manifests))
	hub := newFakeHub(t)
	hub.serveDiscovery(objs)
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Namespace":
			hub.objects[objectPath(obj)] = obj.Object
		case "Service", "APIService":
			hub.invalid[objectPath(obj)] = true
		}
	}
	stdout, _, err := hub.run("install", "--dry-run=server")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the hub refused 2 of %d objects, and nothing was changed", len(objs))) ||
		!strings.Contains(err.Error(), "applying Service switchboard-system/switchboard-apiserver: ") ||
		!strings.Contains(err.Error(), "applying APIService v1alpha1.cluster.switchboard.io: ") {
		t.Errorf("err = %v", err)
	}
	if n := hub.hits("PATCH "); n != len(objs) {
		t.Errorf("%d objects sent, want all %d", n, len(objs))
	}
	if !strings.Contains(stdout, "deployment.apps/switchboard-apiserver created (server dry run)\n") || strings.Contains(stdout, "changed nothing") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestInstallOptionsValidate(t *testing.T) {
	badVariant := `--variant must be one of single, ha, not "triple"`
	badImage := `--image: "two words" is not a container image reference`
	for _, tc := range []struct {
		name           string
		variant, image string
		// want are the errors Validate must report, all of them.
		want []string
	}{
		{name: "defaults", variant: "single", image: install.DefaultImage()},
		{name: "ha with an image", variant: "ha", image: "registry.example/switchboard-apiserver:v0.1.0"},
		{name: "unknown variant", variant: "triple", image: install.DefaultImage(), want: []string{badVariant}},
		{name: "no variant", variant: "", image: install.DefaultImage(), want: []string{`--variant must be one of single, ha, not ""`}},
		{name: "bad image", variant: "single", image: "two words", want: []string{badImage}},
		{name: "both", variant: "triple", image: "two words", want: []string{badVariant, badImage}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewInstallOptions(testStreams())
			o.Variant, o.Image = tc.variant, tc.image
			checkAggregate(t, o.Validate(), tc.want)
		})
	}
}

// checkAggregate checks that err reports exactly the errors want, one by
// one (an aggregate when there are several), or is nil when want is empty.
func checkAggregate(t *testing.T, err error, want []string) {
	t.Helper()
	if got := errorTexts(err); !slices.Equal(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

// errorTexts are the texts of the errors err aggregates, or of err.
func errorTexts(err error) []string {
	if err == nil {
		return nil
	}
	var agg utilerrors.Aggregate
	if !errors.As(err, &agg) {
		return []string{err.Error()}
	}
	var texts []string
	for _, e := range agg.Errors() {
		texts = append(texts, e.Error())
	}
	return texts
}

func TestInstallOptionsComplete(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want InstallOptions
	}{
		{args: nil, want: InstallOptions{Variant: "single", Image: install.DefaultImage(), DryRun: dryRunNone}},
		{args: []string{"--variant", "ha", "--dry-run=server"}, want: InstallOptions{Variant: "ha", Image: install.DefaultImage(), DryRun: dryRunServer}},
		// The image given is the default one: it was given all the same.
		{args: []string{"--image", install.DefaultImage()}, want: InstallOptions{Variant: "single", Image: install.DefaultImage(), imageGiven: true}},
		{args: []string{"--image", "registry.example/sb:v9", "--dry-run=client"}, want: InstallOptions{Variant: "single", Image: "registry.example/sb:v9", DryRun: dryRunClient, imageGiven: true}},
	} {
		t.Run(cmp.Or(strings.Join(tc.args, " "), "no flags"), func(t *testing.T) {
			// No hub: Complete reads none.
			hub := testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
			o := NewInstallOptions(testStreams())
			cmd := newInstallCommand(hub, o)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := o.Complete(hub, cmd, nil); err != nil {
				t.Fatal(err)
			}
			got := InstallOptions{Variant: o.Variant, Image: o.Image, DryRun: o.DryRun, imageGiven: o.imageGiven}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A client dry run reads no hub: it needs no hub kubeconfig, and it
// warns about an image that may not be published unless one was given.
func TestInstallRunClientDryRunNeedsNoHub(t *testing.T) {
	notRelease := "Warning: this kubectl-switchboard is not a release"
	for _, tc := range []struct {
		name       string
		imageGiven bool
	}{
		{name: "default image", imageGiven: false},
		{name: "image given", imageGiven: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := NewInstallOptions(genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
			o.DryRun, o.imageGiven = dryRunClient, tc.imageGiven
			o.hub = testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
			if err := o.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if objs := decodeObjects(t, out.String()); len(objs) == 0 || serverImage(t, objs) != o.Image {
				t.Errorf("%d objects printed, want the manifests with image %s", len(objs), o.Image)
			}
			if warned := strings.Contains(errOut.String(), notRelease); warned == tc.imageGiven {
				t.Errorf("warned of the image: %v, want %v:\n%s", warned, !tc.imageGiven, errOut.String())
			}
		})
	}
	// Without a dry run, the hub's kubeconfig is read.
	o := NewInstallOptions(testStreams())
	o.hub = testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
	if err := o.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "loading the hub kubeconfig") {
		t.Errorf("err = %v, want the hub kubeconfig's", err)
	}
}
