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
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"

	"github.com/switchboard-io/switchboard/artifacts/deploy"
	"github.com/switchboard-io/switchboard/pkg/install"
)

const installFieldManager = "kubectl-switchboard"

func newInstallCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var variant string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "install [--variant single|ha] [--dry-run]",
		Short: "Install switchboard on the hub, with a serving pair and the APIService caBundle filled in",
		Long: `install renders the manifests of artifacts/deploy (variant single: one
replica with embedded etcd on a volume; ha: three replicas on an external
etcd) and adds switchboard's serving pair: a new CA and a certificate for
switchboard-apiserver.switchboard-system.svc, in the Secret
switchboard-apiserver-serving, with the CA in the APIService's caBundle.

With --dry-run it prints them as YAML and changes nothing. Without, it
applies them to the hub with server-side apply; a serving Secret already
there is kept, so running install again does not rotate the certificate.
The ha variant also needs the Secret switchboard-etcd-client and your
--etcd-servers (patch the Deployment).`,
		Example: `  kubectl switchboard install --dry-run > switchboard.yaml
  kubectl switchboard install --variant single`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !contains(deploy.Variants, variant) {
				return fmt.Errorf("--variant must be one of %s, not %q", strings.Join(deploy.Variants, ", "), variant)
			}
			var pair *install.ServingPair
			if !dryRun {
				existing, err := existingServingPair(cmd, hub)
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
			manifests, err := install.Manifests(variant, pair)
			if err != nil {
				return err
			}
			if dryRun {
				_, err := streams.Out.Write(manifests)
				return err
			}
			return applyManifests(cmd, hub, streams, manifests)
		},
	}
	cmd.Flags().StringVar(&variant, "variant", "single", "which installation: single or ha")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the manifests, with a new serving pair, and change nothing")
	return cmd
}

// existingServingPair reads the serving Secret of an earlier install, if any.
func existingServingPair(cmd *cobra.Command, hub hubFlags) (*install.ServingPair, error) {
	_, client, _, err := hub.clients()
	if err != nil {
		return nil, err
	}
	secret, err := client.CoreV1().Secrets(install.Namespace).Get(cmd.Context(), install.ServingSecretName, metav1.GetOptions{})
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

// applyManifests applies every object with server-side apply, in order.
func applyManifests(cmd *cobra.Command, hub hubFlags, streams genericiooptions.IOStreams, manifests []byte) error {
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
	for _, info := range infos {
		data, err := runtime.Encode(unstructured.UnstructuredJSONScheme, info.Object)
		if err != nil {
			return err
		}
		helper := resource.NewHelper(info.Client, info.Mapping).WithFieldManager(installFieldManager)
		if _, err := helper.Patch(info.Namespace, info.Name, types.ApplyPatchType, data, &metav1.PatchOptions{Force: &force}); err != nil {
			return fmt.Errorf("applying %s %s: %w", info.Mapping.GroupVersionKind.Kind, info.ObjectName(), err)
		}
		fmt.Fprintf(streams.Out, "applied %s %s\n", strings.ToLower(info.Mapping.GroupVersionKind.Kind), nameOf(info))
	}
	fmt.Fprintln(streams.Out, "Switchboard is installed; kubectl get apiservice v1alpha1.cluster.switchboard.io shows when it is Available.")
	return nil
}

func nameOf(info *resource.Info) string {
	if info.Namespace != "" {
		return info.Namespace + "/" + info.Name
	}
	return info.Name
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}
