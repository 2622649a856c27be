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

package topology

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// kwokNodeAnnotation marks the nodes kwok plays.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// nodesPerMember is how many fake nodes each member gets.
	nodesPerMember = 2
	// workloadNamespace holds the pods made for tests in every member.
	workloadNamespace = "workloads"
	// EchoPort is the pod port that port-forward connects to a local
	// `cat`: whatever a client sends comes back.
	EchoPort = 8080
	// LogLine starts every line of the pods' logs.
	LogLine = "log line"
)

// kwokConfig is kwok's configuration for one member: its kubelet serving
// pair and address, and how pods answer exec, logs and port-forward. When a
// KwokConfiguration document is given, kwok applies none of its defaults, so
// every option whose zero value turns something off is set here.
const kwokConfig = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
metadata:
  name: kwok
options:
  cidr: 10.0.0.0/24
  nodeIP: 127.0.0.1
  nodePort: {{PORT}}
  serverAddress: 127.0.0.1:{{PORT}}
  tlsCertFile: {{CERT}}
  tlsPrivateKeyFile: {{KEY}}
  manageNodesWithAnnotationSelector: ` + kwokNodeAnnotation + `=fake
  enableDebuggingHandlers: true
  enableProfilingHandler: false
  enableContentionProfiling: false
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  nodeLeaseDurationSeconds: 40
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: local-exec
spec:
  execs:
  - local:
      workDir: {{DIR}}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: cri-logs
spec:
  logs:
  - logsFile: {{LOGS}}
    follow: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: echo
spec:
  forwards:
  - ports: [{{ECHO}}]
    command: ["cat"]
`

func kwokName(m *Cluster) string { return m.Name + "-kwok" }

func (u *upper) startKwok(m *Cluster) error {
	dir := filepath.Join(u.state.RunDir, "kwok", m.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Container logs in the CRI format kubectl logs reads through the kubelet.
	logsFile := filepath.Join(dir, "container.log")
	var logs strings.Builder
	start := time.Now().UTC()
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&logs, "%s stdout F %s %d of %s\n", start.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), LogLine, i, m.Name)
	}
	if err := os.WriteFile(logsFile, []byte(logs.String()), 0o600); err != nil {
		return err
	}
	config := strings.NewReplacer(
		"{{PORT}}", strconv.Itoa(m.KubeletPort),
		"{{CERT}}", m.PKI.KubeletServingCert,
		"{{KEY}}", m.PKI.KubeletServingKey,
		"{{DIR}}", dir,
		"{{LOGS}}", logsFile,
		"{{ECHO}}", strconv.Itoa(EchoPort),
	).Replace(kwokConfig)
	configFile := filepath.Join(dir, "kwok.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return err
	}

	args := []string{u.cfg.Binaries.Kwok, "--kubeconfig=" + m.Kubeconfig, "--config=" + configFile}
	stages, err := filepath.Glob(filepath.Join(u.cfg.Binaries.KwokStages, "*.yaml"))
	if err != nil {
		return err
	}
	if len(stages) == 0 {
		return fmt.Errorf("no kwok stage definitions in %s", u.cfg.Binaries.KwokStages)
	}
	sort.Strings(stages)
	for _, s := range stages {
		args = append(args, "--config="+s)
	}
	args = append(args,
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--node-ip=127.0.0.1",
		"--node-port="+strconv.Itoa(m.KubeletPort),
		"--server-address=127.0.0.1:"+strconv.Itoa(m.KubeletPort),
		"--tls-cert-file="+m.PKI.KubeletServingCert,
		"--tls-private-key-file="+m.PKI.KubeletServingKey,
	)
	_, err = u.startIn(m.NetNS, kwokName(m), args)
	return err
}

// populateMember makes the member's fake nodes and a pod on each, bound
// directly (there is no scheduler), and waits until the nodes are Ready and
// the pods Running.
func (u *upper) populateMember(ctx context.Context, m *Cluster) error {
	client, err := m.Client()
	if err != nil {
		return err
	}
	m.PodNamespace = workloadNamespace
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workloadNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	m.Nodes, m.Pods = nil, nil
	for i := 0; i < nodesPerMember; i++ {
		nodeName := fmt.Sprintf("%s-node-%d", m.Name, i)
		_, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        nodeName,
				Annotations: map[string]string{kwokNodeAnnotation: "fake"},
				Labels: map[string]string{
					"kubernetes.io/hostname": nodeName,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
			},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		m.Nodes = append(m.Nodes, nodeName)

		podName := fmt.Sprintf("web-%d", i)
		_, err = client.CoreV1().Pods(workloadNamespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				NodeName:                     nodeName,
				AutomountServiceAccountToken: ptr(false),
				Containers: []corev1.Container{{
					Name:  "web",
					Image: "registry.invalid/web:1.0", // never pulled: kwok plays the pod
					Ports: []corev1.ContainerPort{{ContainerPort: EchoPort}},
				}},
			},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		m.Pods = append(m.Pods, podName)
	}

	kwok := u.state.process(kwokName(m))
	if err := waitFor(ctx, kwok, m.Name+" nodes Ready", func(ctx context.Context) error {
		for _, name := range m.Nodes {
			node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s is not Ready", name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return waitFor(ctx, kwok, m.Name+" pods Running", func(ctx context.Context) error {
		for _, name := range m.Pods {
			pod, err := client.CoreV1().Pods(workloadNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pod.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pod %s is %s", name, pod.Status.Phase)
			}
		}
		return nil
	})
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
