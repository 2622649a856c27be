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
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

func newKubeconfigCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var outputFile, contextName string
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Print a kubeconfig that reaches member NAME through the hub, as you",
		Long: `kubeconfig prints a kubeconfig for member cluster NAME: your current hub
context with the server URL suffixed by the proxy path
(/apis/cluster.switchboard.io/v1alpha1/clusters/NAME/proxy). It keeps your hub
credentials, so the member applies its RBAC to your own identity.`,
		Example: `  kubectl switchboard kubeconfig member1 > member1.kubeconfig
  kubectl --kubeconfig member1.kubeconfig get nodes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := hub.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return fmt.Errorf("loading the hub kubeconfig: %w", err)
			}
			hubContext := raw.CurrentContext
			if hub.Context != nil && *hub.Context != "" {
				hubContext = *hub.Context
			}
			member, err := kubeconfig.ForMember(&raw, hubContext, args[0], contextName)
			if err != nil {
				return err
			}
			// Embed certificate and key files, so the kubeconfig stands alone.
			if err := clientcmdapi.FlattenConfig(member); err != nil {
				return fmt.Errorf("embedding the files the hub kubeconfig names: %w", err)
			}
			if outputFile != "" {
				if err := clientcmd.WriteToFile(*member, outputFile); err != nil {
					return err
				}
				fmt.Fprintf(streams.ErrOut, "Wrote %s (context %q)\n", outputFile, member.CurrentContext)
				return nil
			}
			data, err := clientcmd.Write(*member)
			if err != nil {
				return err
			}
			_, err = streams.Out.Write(data)
			return err
		},
	}
	cmd.Flags().StringVar(&outputFile, "output-file", "", "write the kubeconfig to this file (mode 0600) instead of standard output")
	cmd.Flags().StringVar(&contextName, "context-name", "", "name of the context in the new kubeconfig (default: <hub context>-NAME)")
	return cmd
}

func newListCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var probeTimeout time.Duration
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"status"},
		Short:   "List the joined clusters with their readiness, version and whether their credential works",
		Long: `list shows every Cluster on the hub. CREDENTIAL is checked live: a request
to the member's /version through the hub, as you, which fails when the
member credential does not work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, kube, sb, err := hub.clients()
			if err != nil {
				return err
			}
			list, err := sb.ClusterV1alpha1().Clusters().List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("listing Clusters on the hub: %w", err)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(streams.Out, "No clusters are joined.")
				return nil
			}
			w := tabwriter.NewWriter(streams.Out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "NAME\tENDPOINT\tREADY\tVERSION\tCREDENTIAL")
			for i := range list.Items {
				c := &list.Items[i]
				ready, version := "Unknown", c.Status.KubernetesVersion
				for _, cond := range c.Status.Conditions {
					if cond.Type == v1alpha1.ConditionReady {
						ready = string(cond.Status)
					}
				}
				if version == "" {
					version = "<unknown>"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Spec.Endpoint, ready, version, probeCredential(cmd.Context(), kube, c.Name, probeTimeout))
			}
			return w.Flush()
		},
	}
	cmd.Flags().DurationVar(&probeTimeout, "probe-timeout", 10*time.Second, "how long each live check may take")
	return cmd
}

// probeCredential reports whether a request through the hub reaches the member.
func probeCredential(ctx context.Context, hub kubernetes.Interface, name string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := hub.Discovery().RESTClient().Get().AbsPath(kubeconfig.ProxyPath(name) + "/version").DoRaw(ctx)
	if err == nil {
		return "works"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "..."
	}
	return "fails: " + msg
}
