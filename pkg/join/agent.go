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

package join

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	agentartifacts "github.com/switchboard-io/switchboard/artifacts/agent"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// Agent says how join sets up the switchboard-agent of a member that
// switchboard reaches through a tunnel (join --tunnel).
type Agent struct {
	// Image is the agent's container image.
	Image string
	// HubServer is the hub's API server URL as the agent reaches it from
	// inside the member; empty means the hub kubeconfig's server.
	HubServer string
	// ServerCount is how many switchboard replicas the agent holds a
	// tunnel to: as many as switchboard runs. Zero means 1.
	ServerCount int
}

// ValidateAgentName says why a tunnelled Cluster cannot have this name,
// if it cannot: its agent's hub ServiceAccount, switchboard-agent-<name>,
// must be a valid name too, which takes a few characters fewer.
func ValidateAgentName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(names.AgentHubIdentity(name)); len(msgs) > 0 {
		return fmt.Errorf("%q cannot name a Cluster reached through a tunnel: its agent's hub ServiceAccount %s is not a valid name: %s",
			name, names.AgentHubIdentity(name), strings.Join(msgs, "; "))
	}
	return nil
}

// agentDeclaration is what objects declares for the agent. kubeconfig is
// nil until join has the agent's hub token.
type agentDeclaration struct {
	Agent
	kubeconfig []byte
}

// The agent's objects come from artifacts/agent, as an admin applies them
// by hand; join fills in the Cluster's name, the image and the server
// count, and labels them.
const (
	agentHubManifest        = "hub/rbac.yaml"
	agentDeploymentManifest = "member/deployment.yaml"
	agentAccountManifest    = "member/serviceaccount.yaml"
)

// agentObjects declares the agent of Cluster name, the hub's side first:
// its hub ServiceAccount in hubNamespace, allowed by a ClusterRole to open
// this Cluster's tunnel and nothing else, and that account's token
// Secret; then, in the member, the agent's ServiceAccount, its hub
// kubeconfig and its Deployment.
func agentObjects(name, hubNamespace string, agent *agentDeclaration, labels map[string]string) []object {
	identity := names.AgentHubIdentity(name)
	hubAccount := manifest[corev1ac.ServiceAccountApplyConfiguration](agentHubManifest, "ServiceAccount", name).
		WithNamespace(hubNamespace).WithLabels(labels)
	role := manifest[rbacac.ClusterRoleApplyConfiguration](agentHubManifest, "ClusterRole", name).WithLabels(labels)
	binding := manifest[rbacac.ClusterRoleBindingApplyConfiguration](agentHubManifest, "ClusterRoleBinding", name).WithLabels(labels)
	for i := range binding.Subjects {
		binding.Subjects[i].WithNamespace(hubNamespace)
	}
	hubToken := (&corev1ac.SecretApplyConfiguration{}).WithAPIVersion("v1").WithKind("Secret").
		WithGenerateName(identity + "-token-").WithNamespace(hubNamespace).WithLabels(labels).
		WithAnnotations(map[string]string{corev1.ServiceAccountNameKey: identity}).
		WithType(corev1.SecretTypeServiceAccountToken)

	credential := corev1ac.Secret(names.AgentHubCredential, Namespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque)
	if agent.kubeconfig != nil {
		credential.WithData(map[string][]byte{names.AgentHubKubeconfigKey: agent.kubeconfig})
	} else {
		credential.WithStringData(map[string]string{
			names.AgentHubKubeconfigKey: placeholder + " (a kubeconfig for the hub with the token of the hub's " + identity + "-token-* Secret)",
		})
	}
	account := manifest[corev1ac.ServiceAccountApplyConfiguration](agentAccountManifest, "ServiceAccount", name).WithLabels(labels)
	deployment := manifest[appsv1ac.DeploymentApplyConfiguration](agentDeploymentManifest, "Deployment", name).WithLabels(labels)
	if agent.kubeconfig != nil {
		// The agent reads its kubeconfig once, when it starts: a new one
		// (a replaced token) rolls the pods.
		sum := sha256.Sum256(agent.kubeconfig)
		deployment.Spec.Template.WithAnnotations(map[string]string{KubeconfigHashAnnotation: hex.EncodeToString(sum[:8])})
	}
	for i := range deployment.Spec.Template.Spec.Containers {
		c := &deployment.Spec.Template.Spec.Containers[i]
		c.WithImage(agent.Image)
		for j, arg := range c.Args {
			if strings.HasPrefix(arg, serverCountFlag) {
				c.Args[j] = serverCountFlag + strconv.Itoa(max(agent.ServerCount, 1))
			}
		}
	}
	return []object{
		{where: onHub, agent: true, config: hubAccount},
		{where: onHub, agent: true, config: role, exact: []string{"aggregationRule"}},
		{where: onHub, agent: true, config: binding, immutable: []string{"roleRef"}},
		{where: onHub, agent: true, config: hubToken},
		{where: inMember, agent: true, config: account},
		{where: inMember, agent: true, config: credential, exact: []string{"data"}},
		{where: inMember, agent: true, config: deployment, defaulted: true},
	}
}

// KubeconfigHashAnnotation is the annotation of the agent's pod template
// that holds a hash of the agent's hub kubeconfig.
const KubeconfigHashAnnotation = "agent.switchboard.io/hub-kubeconfig-hash"

const (
	clusterFlag     = "--cluster="
	serverCountFlag = "--server-count="
)

// agentCluster is the Cluster a switchboard-agent Deployment serves: its
// container's --cluster flag.
func agentCluster(d *appsv1.Deployment) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, arg := range c.Args {
			if strings.HasPrefix(arg, clusterFlag) {
				return strings.TrimPrefix(arg, clusterFlag)
			}
		}
	}
	return ""
}

// manifest decodes the object of kind in one of artifacts/agent's files,
// with the Cluster's name filled in. The files are part of this binary,
// and their unit tests decode each one: a failure is a defect of the
// build, not of the input.
func manifest[T any](file, kind, cluster string) *T {
	obj, err := decodeManifest[T](file, kind, cluster)
	if err != nil {
		panic(fmt.Sprintf("artifacts/agent/%s: %v", file, err))
	}
	return obj
}

func decodeManifest[T any](file, kind, cluster string) (*T, error) {
	data, err := agentartifacts.Files.ReadFile(file)
	if err != nil {
		return nil, err
	}
	data = bytes.ReplaceAll(data, []byte(agentartifacts.ClusterPlaceholder), []byte(cluster))
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		if err := decoder.Decode(&raw); errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no %s", kind)
		} else if err != nil {
			return nil, err
		}
		var meta metav1.TypeMeta
		if err := json.Unmarshal(raw.Raw, &meta); err != nil {
			return nil, err
		}
		if meta.Kind != kind {
			continue
		}
		obj := new(T)
		strict := json.NewDecoder(bytes.NewReader(raw.Raw))
		strict.DisallowUnknownFields()
		if err := strict.Decode(obj); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		return obj, nil
	}
}

// agentWarnings are what is worth telling about the agent's kubeconfig
// before its pods try it.
func (o *Options) agentWarnings() []string {
	if o.Agent == nil {
		return nil
	}
	var warnings []string
	if o.HubConfig != nil && o.HubConfig.Insecure {
		warnings = append(warnings, "the hub kubeconfig skips TLS verification, so the agent's kubeconfig in the member does too: "+
			"anyone who can intercept the agent's connection to the hub can take its token")
	}
	if u, err := url.Parse(o.Agent.HubServer); err == nil {
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			warnings = append(warnings, fmt.Sprintf("the agent reaches the hub at %s, a loopback address: pods in the member cannot; "+
				"give the address they reach the hub at with --agent-hub-server", o.Agent.HubServer))
		}
	}
	return warnings
}

// agentKubeconfig is the agent's kubeconfig for the hub: server, the CA
// the hub kubeconfig trusts (none: the system's roots), and the token.
func agentKubeconfig(hub *rest.Config, hubCA []byte, server string, token []byte) ([]byte, error) {
	if hub == nil {
		hub = &rest.Config{}
	}
	config := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"hub": {
			Server:                   server,
			CertificateAuthorityData: hubCA,
			TLSServerName:            hub.ServerName,
			InsecureSkipTLSVerify:    hub.Insecure,
		}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{names.Agent: {Token: string(token)}},
		Contexts:       map[string]*clientcmdapi.Context{"hub": {Cluster: "hub", AuthInfo: names.Agent}},
		CurrentContext: "hub",
	}
	data, err := clientcmd.Write(config)
	if err != nil {
		return nil, fmt.Errorf("writing the agent's hub kubeconfig: %w", err)
	}
	return data, nil
}
