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
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"

	"github.com/switchboard-io/switchboard/artifacts/deploy"
	"github.com/switchboard-io/switchboard/pkg/install"
	"github.com/switchboard-io/switchboard/pkg/version"
)

const installFieldManager = "kubectl-switchboard"

// releaseVersion matches the versions whose images are published.
var releaseVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+(-(alpha|beta|rc)\.\d+)?$`)

// InstallOptions are the options of kubectl switchboard install.
type InstallOptions struct {
	// Variant is which installation: one of deploy.Variants.
	Variant string
	// Image is the switchboard-apiserver image to run.
	Image string
	// DryRun is --dry-run: client prints the manifests and sends nothing.
	DryRun dryRunStrategy

	// imageGiven is whether --image was given; set by Complete.
	imageGiven bool
	// hub is where install applies, in Run: a client dry run reads none.
	hub hubFlags

	genericiooptions.IOStreams
}

// NewInstallOptions returns the options of install, with their defaults:
// the single variant and the image of this plugin's version.
func NewInstallOptions(streams genericiooptions.IOStreams) *InstallOptions {
	return &InstallOptions{Variant: "single", Image: install.DefaultImage(), IOStreams: streams}
}

// newInstallCommand is the install command, which fills o from its flags.
func newInstallCommand(hub hubFlags, o *InstallOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install [--variant single|ha] [--image IMAGE] [--dry-run=none|client|server]",
		Short: "Install switchboard on the hub, with a serving pair and the APIService caBundle filled in",
		Long: `install renders the manifests of artifacts/deploy (variant single: one
replica with embedded etcd on a volume; ha: three replicas on an external
etcd) with the switchboard-apiserver image of this plugin's version, and
adds switchboard's serving pair: a new CA and a certificate for
switchboard-apiserver.switchboard-system.svc, in the Secret
switchboard-apiserver-serving, with the CA in the APIService's caBundle.

It applies them to the hub with server-side apply; a serving Secret already
there is kept, so running install again does not rotate the certificate.
With --dry-run=client it prints them as YAML, with a new serving pair, and
sends nothing: the output holds the serving private key, so apply it and
keep it only on the hub, never in version control. With --dry-run=server
the hub validates every object and persists none, and install says what
would be created or configured.

The ha variant also needs the Secret switchboard-etcd-client and your
--etcd-servers (patch the Deployment).`,
		Example: `  kubectl switchboard install --dry-run=client > switchboard.yaml
  kubectl switchboard install --dry-run=server
  kubectl switchboard install --variant single
  kubectl switchboard install --image registry.example/switchboard-apiserver:v0.1.0 --kubeconfig hub.kubeconfig`,
		Args: cobra.NoArgs,
		RunE: runE(hub, o),
	}
	cmd.Flags().StringVar(&o.Variant, "variant", o.Variant, "which installation: single or ha")
	cmd.Flags().StringVar(&o.Image, "image", o.Image, "the switchboard-apiserver image to run; the default is the one of this plugin's version")
	addDryRunFlag(cmd, &o.DryRun, `Must be "none", "server", or "client". If client strategy, print the manifests, with a new serving pair and its private key, and send nothing. If server strategy, apply them with server-side dry run: the hub validates and admits every object and persists none.`)
	_ = cmd.RegisterFlagCompletionFunc("variant", cobra.FixedCompletions(deploy.Variants, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Complete notes whether --image was given.
func (o *InstallOptions) Complete(hub hubFlags, cmd *cobra.Command, _ []string) error {
	o.hub = hub
	o.imageGiven = cmd.Flags().Changed("image")
	return nil
}

// Validate checks --variant and --image, and reports every one that is
// wrong.
func (o *InstallOptions) Validate() error {
	var errs []error
	if !slices.Contains(deploy.Variants, o.Variant) {
		errs = append(errs, fmt.Errorf("--variant must be one of %s, not %q", strings.Join(deploy.Variants, ", "), o.Variant))
	}
	if err := install.CheckImage(o.Image); err != nil {
		errs = append(errs, fmt.Errorf("--image: %w", err))
	}
	return utilerrors.NewAggregate(errs)
}

// Run renders the manifests with a serving pair, the hub's if it has one,
// and applies them, or with --dry-run=client prints them.
func (o *InstallOptions) Run(ctx context.Context) error {
	if v := version.Get().GitVersion; !o.imageGiven && !releaseVersion.MatchString(v) {
		fmt.Fprintf(o.ErrOut, "Warning: this kubectl-switchboard is not a release (version %s), so the image %s may not be published; give the image you built with --image.\n", v, o.Image)
	}
	var pair *install.ServingPair
	if o.DryRun != dryRunClient {
		existing, err := existingServingPair(ctx, o.hub)
		if err != nil {
			return err
		}
		pair = existing
	}
	if pair == nil {
		generated, err := install.GenerateServingPair()
		if err != nil {
			return err
		}
		pair = generated
	}
	manifests, err := install.Manifests(o.Variant, pair, o.Image)
	if err != nil {
		return err
	}
	if o.DryRun == dryRunClient {
		fmt.Fprintf(o.ErrOut, "Warning: the output holds the private key of switchboard's serving certificate, in the Secret %s/%s. Apply it and keep it only on the hub, as a Secret; do not commit it.\n",
			install.Namespace, install.ServingSecretName)
		_, err := o.Out.Write(manifests)
		return err
	}
	return applyManifests(o.hub, o.IOStreams, manifests, o.DryRun)
}

// existingServingPair reads the serving Secret of an earlier install, if any.
func existingServingPair(ctx context.Context, hub hubFlags) (*install.ServingPair, error) {
	_, client, _, err := hub.clients()
	if err != nil {
		return nil, err
	}
	secret, err := client.CoreV1().Secrets(install.Namespace).Get(ctx, install.ServingSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the serving Secret %s/%s: %w", install.Namespace, install.ServingSecretName, err)
	}
	pair := &install.ServingPair{Cert: secret.Data[corev1.TLSCertKey], Key: secret.Data[corev1.TLSPrivateKeyKey], CACert: secret.Data["ca.crt"]}
	if len(pair.Cert) == 0 || len(pair.Key) == 0 || len(pair.CACert) == 0 {
		return nil, fmt.Errorf("the serving Secret %s/%s lacks tls.crt, tls.key or ca.crt; fix or delete it and install again",
			install.Namespace, install.ServingSecretName)
	}
	return pair, nil
}

// applyManifests applies every object with server-side apply, in order,
// with dryRun's strategy (none or server), and prints for each, as kubectl
// apply does, whether it was (or would be) created, configured or unchanged.
func applyManifests(hub hubFlags, streams genericiooptions.IOStreams, manifests []byte, dryRun dryRunStrategy) error {
	result := resource.NewBuilder(hub).
		Unstructured().
		Stream(bytes.NewReader(manifests), "switchboard").
		Flatten().
		Do()
	infos, err := result.Infos()
	if err != nil {
		return fmt.Errorf("reading the manifests against the hub: %w", err)
	}
	force := true
	// Namespaces a server dry run would create: the hub cannot dry-run
	// objects in them, as the namespace does not exist yet.
	newNamespaces := map[string]bool{}
	var failures []error
	for _, info := range infos {
		data, err := runtime.Encode(unstructured.UnstructuredJSONScheme, info.Object)
		if err != nil {
			return err
		}
		helper := resource.NewHelper(info.Client, info.Mapping).WithFieldManager(installFieldManager)
		live, err := helper.Get(info.Namespace, info.Name)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading %s %s: %w", info.Mapping.GroupVersionKind.Kind, nameOf(info), err)
		}
		exists := err == nil
		applied, err := helper.Patch(info.Namespace, info.Name, types.ApplyPatchType, data, &metav1.PatchOptions{Force: &force, DryRun: dryRun.apiDryRun()})
		if err != nil && dryRun == dryRunServer && newNamespaces[info.Namespace] && isNamespaceNotFound(err, info.Namespace) {
			fmt.Fprintf(streams.Out, "%s created%s; not validated: namespace %s does not exist yet\n", kindName(info), dryRun.suffix(), info.Namespace)
			continue
		}
		if err != nil && dryRun == dryRunServer {
			// Validate everything, and report every failure.
			failures = append(failures, fmt.Errorf("applying %s %s: %w", info.Mapping.GroupVersionKind.Kind, nameOf(info), err))
			continue
		}
		if err != nil {
			return fmt.Errorf("applying %s %s: %w", info.Mapping.GroupVersionKind.Kind, nameOf(info), err)
		}
		op := "created"
		if exists {
			op = "configured"
			if sameContent(live, applied) {
				op = "unchanged"
			}
		} else if info.Mapping.GroupVersionKind.Kind == "Namespace" {
			newNamespaces[info.Name] = true
		}
		fmt.Fprintf(streams.Out, "%s %s%s\n", kindName(info), op, dryRun.suffix())
	}
	if len(failures) > 0 {
		return fmt.Errorf("the hub refused %d of %d objects, and nothing was changed: %w", len(failures), len(infos), utilerrors.NewAggregate(failures))
	}
	if dryRun == dryRunServer {
		fmt.Fprintln(streams.Out, "Server dry run: the hub accepted the objects above and changed nothing.")
		return nil
	}
	fmt.Fprintln(streams.Out, "Switchboard is installed; kubectl get apiservice v1alpha1.cluster.switchboard.io shows when it is Available.")
	return nil
}

// sameContent says whether two versions of an object have the same
// content: all but their status and the metadata the server keeps.
func sameContent(a, b runtime.Object) bool {
	ua, okA := a.(*unstructured.Unstructured)
	ub, okB := b.(*unstructured.Unstructured)
	if !okA || !okB {
		return false
	}
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy().Object
		delete(c, "status")
		unstructured.RemoveNestedField(c, "metadata", "managedFields")
		unstructured.RemoveNestedField(c, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(c, "metadata", "generation")
		return c
	}
	return equality.Semantic.DeepEqual(strip(ua), strip(ub))
}

// isNamespaceNotFound says whether err is the hub's refusal of an object
// because its namespace does not exist.
func isNamespaceNotFound(err error, namespace string) bool {
	var status apierrors.APIStatus
	if namespace == "" || !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	return s.Reason == metav1.StatusReasonNotFound && s.Details != nil && s.Details.Kind == "namespaces" && s.Details.Name == namespace
}

// kindName names an object as kubectl apply prints it: deployment.apps/NAME.
func kindName(info *resource.Info) string {
	gvk := info.Mapping.GroupVersionKind
	kind := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	return kind + "/" + info.Name
}

func nameOf(info *resource.Info) string {
	if info.Namespace != "" {
		return info.Namespace + "/" + info.Name
	}
	return info.Name
}
