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
	"k8s.io/apimachinery/pkg/labels"
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
	// <hub context>-NAME, or <hub context>-fleet.
	ContextName string
	// Fleet asks for the fleet endpoint instead of one member.
	Fleet bool
	// Selector narrows the fleet to the Clusters it picks.
	Selector string

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
		Use:   "kubeconfig (NAME | --fleet [--selector SELECTOR])",
		Short: "Print a kubeconfig that reaches member NAME, or the whole fleet, through the hub, as you",
		Long: `kubeconfig prints a kubeconfig for member cluster NAME: your current hub
context with the server URL suffixed by the proxy path
(/apis/cluster.switchboard.io/v1alpha1/clusters/NAME/proxy). It keeps your hub
credentials, so the member applies its RBAC to your own identity.

It checks first that the Cluster NAME exists on the hub, and fails if not.
If you may not read Clusters, it warns and writes the kubeconfig anyway.

With --fleet it prints a kubeconfig for the fleet endpoint instead
(/apis/cluster.switchboard.io/v1alpha1/fleets/*/proxy): kubectl get, and
get -w, then read every member you may reach at once, with a CLUSTER
column. --selector narrows the fleet to the Clusters whose labels match.
The fleet endpoint only reads; writes and exec go to one member.`,
		Example: `  kubectl switchboard kubeconfig member1 > member1.kubeconfig
  kubectl --kubeconfig member1.kubeconfig get nodes
  kubectl switchboard kubeconfig member1 --context hub --output-file member1.kubeconfig
  kubectl switchboard kubeconfig --fleet --selector env=prod > prod.kubeconfig
  kubectl --kubeconfig prod.kubeconfig get pods -A`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeClusterNames(hub),
		RunE:              runE(hub, o),
	}
	cmd.Flags().StringVar(&o.OutputFile, "output-file", o.OutputFile, "write the kubeconfig to this file (mode 0600) instead of standard output")
	cmd.Flags().StringVar(&o.ContextName, "context-name", o.ContextName, "name of the context in the new kubeconfig (default: <hub context>-NAME, or <hub context>-fleet)")
	cmd.Flags().BoolVar(&o.Fleet, "fleet", o.Fleet, "print a kubeconfig for the fleet endpoint, which reads every member you may reach at once, instead of one member")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", o.Selector, "with --fleet, only the Clusters whose labels match this selector (e.g. env=prod,tier!=db)")
	return cmd
}

// Complete takes NAME from args.
func (o *KubeconfigOptions) Complete(hub hubFlags, _ *cobra.Command, args []string) error {
	o.hub = hub
	if o.Fleet {
		if len(args) > 0 {
			return fmt.Errorf("--fleet takes no NAME: it reaches every member; narrow it with --selector")
		}
		return nil
	}
	name, err := nameFromArgs(args)
	if err != nil {
		return err
	}
	o.Name = name
	return nil
}

// Validate checks the cluster name, or the fleet's selector.
func (o *KubeconfigOptions) Validate() error {
	if o.Fleet {
		if _, err := labels.Parse(o.Selector); err != nil {
			return fmt.Errorf("--selector %q is not a label selector: %w", o.Selector, err)
		}
		return nil
	}
	if o.Selector != "" {
		return fmt.Errorf("--selector is for --fleet; a kubeconfig for one member takes its NAME only")
	}
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
	var member *clientcmdapi.Config
	if o.Fleet {
		// Which members the fleet holds is decided at each request, by
		// the caller's RBAC on the hub: nothing to check here.
		if member, err = kubeconfig.ForFleet(&raw, hubContext, o.Selector, o.ContextName); err != nil {
			return err
		}
	} else {
		if member, err = kubeconfig.ForMember(&raw, hubContext, o.Name, o.ContextName); err != nil {
			return err
		}
		_, _, sb, err := o.hub.clients()
		if err != nil {
			return err
		}
		if err := checkClusterOnHub(ctx, sb.ClusterV1alpha1().Clusters(), o.Name, o.ErrOut); err != nil {
			return err
		}
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
