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

package cluster

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// unknown is shown for a value switchboard has not observed yet.
const unknown = "<unknown>"

var clusterColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Endpoint", Type: "string", Description: "The URL of the member's API server."},
	{Name: "Ready", Type: "string", Description: "The status of the Ready condition: True, False or Unknown."},
	{Name: "Version", Type: "string", Description: "The Kubernetes version the member reports."},
	{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	{Name: "Latency", Type: "string", Priority: 1, Description: "The smoothed time the member takes to answer a probe."},
	{Name: "Reason", Type: "string", Priority: 1, Description: "The reason of the Ready condition."},
	{Name: "Connection", Type: "string", Priority: 1, Description: "How switchboard reaches the member: Direct or Tunnel."},
	{Name: "Agent", Type: "string", Priority: 1, Description: "For a tunnelled member, whether its switchboard-agent is connected: Connected, Disconnected, or <unknown> before the first observation."},
}

// TableConvertor prints Clusters for kubectl get: NAME, ENDPOINT, READY, VERSION, AGE.
type TableConvertor struct{}

// ConvertToTable turns a Cluster or a ClusterList into table rows.
func (TableConvertor) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: clusterColumns}
	now := time.Now()
	switch t := obj.(type) {
	case *cluster.Cluster:
		table.Rows = []metav1.TableRow{clusterRow(t, now)}
		table.ResourceVersion = t.ResourceVersion
	case *cluster.ClusterList:
		table.Rows = make([]metav1.TableRow, 0, len(t.Items))
		for i := range t.Items {
			table.Rows = append(table.Rows, clusterRow(&t.Items[i], now))
		}
		if listMeta, err := meta.ListAccessor(t); err == nil {
			table.ResourceVersion = listMeta.GetResourceVersion()
			table.Continue = listMeta.GetContinue()
			table.RemainingItemCount = listMeta.GetRemainingItemCount()
		}
	default:
		return nil, fmt.Errorf("cannot print %T as a table of Clusters", obj)
	}
	return table, nil
}

func clusterRow(c *cluster.Cluster, now time.Time) metav1.TableRow {
	ready, reason := string(metav1.ConditionUnknown), ""
	agent := ""
	if c.Spec.Connection == cluster.ConnectionTunnel {
		agent = unknown
	}
	for _, cond := range c.Status.Conditions {
		switch {
		case cond.Type == v1alpha1.ConditionReady:
			ready, reason = string(cond.Status), cond.Reason
		case cond.Type == v1alpha1.ConditionAgentConnected && agent != "":
			switch cond.Status {
			case metav1.ConditionTrue:
				agent = "Connected"
			case metav1.ConditionFalse:
				agent = "Disconnected"
			}
		}
	}
	latency := unknown
	if c.Status.ProbeLatency != nil {
		latency = c.Status.ProbeLatency.Duration.Round(100 * time.Microsecond).String()
	}
	version := c.Status.KubernetesVersion
	if version == "" {
		version = unknown
	}
	age := unknown
	if !c.CreationTimestamp.IsZero() {
		age = duration.HumanDuration(now.Sub(c.CreationTimestamp.Time))
	}
	return metav1.TableRow{
		Cells:  []any{c.Name, c.Spec.Endpoint, ready, version, age, latency, reason, string(c.Spec.Connection), agent},
		Object: runtime.RawExtension{Object: c},
	}
}
