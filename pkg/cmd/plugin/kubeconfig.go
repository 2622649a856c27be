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
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	clusterclient "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/typed/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

// clustersResource is how kubectl names the resource, for messages.
const clustersResource = "clusters.cluster.switchboard.io"

// KubeconfigOptions are the options of kubectl switchboard kubeconfig.
type KubeconfigOptions struct {
	// Name is the Cluster's name: the command's argument.
	Name string
	// OutputFile, when set, is where the kubeconfig goes instead of
	// standard output.
	OutputFile string
	// ContextName names the new kubeconfig's context; empty,
	// <hub context>-NAME.
	ContextName string

	// hub is the hub's kubeconfig, read in Run.
	hub hubFlags

	genericiooptions.IOStreams
}

// NewKubeconfigOptions returns the options of kubeconfig, with their
// defaults.
func NewKubeconfigOptions(streams genericiooptions.IOStreams) *KubeconfigOptions {
	return &KubeconfigOptions{IOStreams: streams}
}

// newKubeconfigCommand is the kubeconfig command, which fills o from its flags.
func newKubeconfigCommand(hub hubFlags, o *KubeconfigOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Print a kubeconfig that reaches member NAME through the hub, as you",
		Long: `kubeconfig prints a kubeconfig for member cluster NAME: your current hub
context with the server URL suffixed by the proxy path
(/apis/cluster.switchboard.io/v1alpha1/clusters/NAME/proxy). It keeps your hub
credentials, so the member applies its RBAC to your own identity.

It checks first that the Cluster NAME exists on the hub, and fails if not.
If you may not read Clusters, it warns and writes the kubeconfig anyway.`,
		Example: `  kubectl switchboard kubeconfig member1 > member1.kubeconfig
  kubectl --kubeconfig member1.kubeconfig get nodes
  kubectl switchboard kubeconfig member1 --context hub --output-file member1.kubeconfig`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeClusterNames(hub),
		RunE:              runE(hub, o),
	}
	cmd.Flags().StringVar(&o.OutputFile, "output-file", o.OutputFile, "write the kubeconfig to this file (mode 0600) instead of standard output")
	cmd.Flags().StringVar(&o.ContextName, "context-name", o.ContextName, "name of the context in the new kubeconfig (default: <hub context>-NAME)")
	return cmd
}

// Complete takes NAME from args.
func (o *KubeconfigOptions) Complete(hub hubFlags, _ *cobra.Command, args []string) error {
	name, err := nameFromArgs(args)
	if err != nil {
		return err
	}
	o.Name, o.hub = name, hub
	return nil
}

// Validate checks the cluster name.
func (o *KubeconfigOptions) Validate() error {
	return validateClusterName(o.Name)
}

// Run checks that the Cluster exists on the hub and writes the kubeconfig
// that reaches it.
func (o *KubeconfigOptions) Run(ctx context.Context) error {
	raw, err := o.hub.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return fmt.Errorf("loading the hub kubeconfig: %w", err)
	}
	hubContext := raw.CurrentContext
	if o.hub.Context != nil && *o.hub.Context != "" {
		hubContext = *o.hub.Context
	}
	member, err := kubeconfig.ForMember(&raw, hubContext, o.Name, o.ContextName)
	if err != nil {
		return err
	}
	_, _, sb, err := o.hub.clients()
	if err != nil {
		return err
	}
	if err := checkClusterOnHub(ctx, sb.ClusterV1alpha1().Clusters(), o.Name, o.ErrOut); err != nil {
		return err
	}
	// Embed certificate and key files, so the kubeconfig stands alone.
	if err := clientcmdapi.FlattenConfig(member); err != nil {
		return fmt.Errorf("embedding the files the hub kubeconfig names: %w", err)
	}
	if o.OutputFile != "" {
		if err := clientcmd.WriteToFile(*member, o.OutputFile); err != nil {
			return err
		}
		fmt.Fprintf(o.ErrOut, "Wrote %s (context %q)\n", o.OutputFile, member.CurrentContext)
		return nil
	}
	data, err := clientcmd.Write(*member)
	if err != nil {
		return err
	}
	_, err = o.Out.Write(data)
	return err
}

// checkClusterOnHub fails when the Cluster name does not exist on the hub.
// When the caller may not read it, it warns on errOut and lets them go on:
// reaching the member needs only clusters/proxy.
func checkClusterOnHub(ctx context.Context, clusters clusterclient.ClusterInterface, name string, errOut io.Writer) error {
	_, err := clusters.Get(ctx, name, metav1.GetOptions{})
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err) && errors.As(err, &status) && status.Status().Details != nil && status.Status().Details.Name == name:
		return fmt.Errorf("cluster %q not found on the hub (kubectl get %s lists the clusters)", name, clustersResource)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the hub does not serve %s; is switchboard installed? (%w)", clustersResource, err)
	case apierrors.IsForbidden(err):
		fmt.Fprintf(errOut, "Warning: could not check that cluster %q exists on the hub, writing the kubeconfig anyway: %v\n", name, err)
		return nil
	}
	return fmt.Errorf("checking that cluster %q exists on the hub: %w", name, err)
}
