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

// Package framework gives end-to-end tests the running local topology: admin
// clients for the hub and every member, users made on the hub, and the real
// kubectl binary.
package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
	"github.com/switchboard-io/switchboard/test/topology"
)

// Members is how many member clusters the suite starts when none runs.
const Members = 2

// IsolatedMembers is how many members it starts in network namespaces of
// their own, reached only through their agents' tunnels.
const IsolatedMembers = 1

// Framework is the topology the suite runs against.
type Framework struct {
	State *topology.State
	// started is true when this run started the topology and must stop it.
	started bool
}

// RunDir is where the topology lives: $SWITCHBOARD_RUN_DIR, or the directory
// make local-up uses, so that a running make local-up is reused.
func RunDir() string {
	if dir := os.Getenv("SWITCHBOARD_RUN_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(RepoRoot(), "_output", "local-up")
}

// RepoRoot is the directory of go.mod above the working directory.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// Setup brings the topology up, or reuses a healthy one. A broken leftover
// is taken down first.
func Setup(ctx context.Context) (*Framework, error) {
	binaries, err := topology.BinariesFromEnv()
	if err != nil {
		return nil, err
	}
	cfg := topology.Config{RunDir: RunDir(), Members: Members, IsolatedMembers: IsolatedMembers, Binaries: binaries, Progress: os.Stderr}
	state, already, err := topology.Up(ctx, cfg)
	if err == nil && already && len(state.Isolated) < IsolatedMembers {
		// A make local-up without --isolated-members: the suite needs them.
		err = fmt.Errorf("it runs %d isolated members, and the suite needs %d", len(state.Isolated), IsolatedMembers)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "The topology in %s cannot be reused (%v); starting a new one\n", cfg.RunDir, err)
		if downErr := topology.Down(cfg.RunDir, os.Stderr); downErr != nil {
			return nil, errors.Join(err, downErr)
		}
		if state, already, err = topology.Up(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if already {
		fmt.Fprintf(os.Stderr, "Reusing the topology that runs in %s\n", cfg.RunDir)
	}
	return &Framework{State: state, started: !already}, nil
}

// Started says whether Setup started the topology, rather than finding it running.
func (f *Framework) Started() bool { return f.started }

// HubConfig is an admin client configuration for the hub.
func (f *Framework) HubConfig(t testing.TB) *rest.Config {
	t.Helper()
	config, err := f.State.Hub.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return config
}

// Hub is an admin clientset for the hub.
func (f *Framework) Hub(t testing.TB) kubernetes.Interface {
	t.Helper()
	return kubernetes.NewForConfigOrDie(f.HubConfig(t))
}

// Switchboard is an admin clientset for the cluster.switchboard.io API through the hub.
func (f *Framework) Switchboard(t testing.TB) clientset.Interface {
	t.Helper()
	return clientset.NewForConfigOrDie(f.HubConfig(t))
}

// Member is an admin clientset for a member cluster, reached directly.
func (f *Framework) Member(t testing.TB, name string) kubernetes.Interface {
	t.Helper()
	m, err := f.State.Member(name)
	if err != nil {
		t.Fatal(err)
	}
	client, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// MemberAdminKubeconfig is the path of a member's admin kubeconfig.
func (f *Framework) MemberAdminKubeconfig(t testing.TB, name string) string {
	t.Helper()
	m, err := f.State.Member(name)
	if err != nil {
		t.Fatal(err)
	}
	return m.Kubeconfig
}

// MemberNames lists the member clusters.
func (f *Framework) MemberNames() []string {
	names := make([]string, 0, len(f.State.Members))
	for _, m := range f.State.Members {
		names = append(names, m.Name)
	}
	return names
}

// User is an identity on the hub that a test made.
type User struct {
	Name string
	// Kubeconfig is a file that authenticates as the user to the hub.
	Kubeconfig string
	Config     *rest.Config
}

// Client is a clientset acting as the user on the hub.
func (u *User) Client() kubernetes.Interface { return kubernetes.NewForConfigOrDie(u.Config) }

// Switchboard is a cluster.switchboard.io clientset acting as the user on the hub.
func (u *User) Switchboard() clientset.Interface { return clientset.NewForConfigOrDie(u.Config) }

// CertificateUser makes a hub user who authenticates with a client
// certificate signed by the hub's CA.
func (f *Framework) CertificateUser(t testing.TB, name string, groups ...string) *User {
	t.Helper()
	cert, key, err := f.State.Hub.SignClient(name, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return f.userWith(t, name, &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key})
}

// ServiceAccountUser makes a ServiceAccount in a new namespace of the hub
// and returns a user who authenticates with a token for it.
func (f *Framework) ServiceAccountUser(t testing.TB, name string) *User {
	t.Helper()
	ctx := context.Background()
	hub := f.Hub(t)
	ns := CreateNamespace(t, hub, "sa-"+name)
	if _, err := hub.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	token, err := hub.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f.userWith(t, "system:serviceaccount:"+ns+":"+name, &clientcmdapi.AuthInfo{Token: token.Status.Token})
}

func (f *Framework) userWith(t testing.TB, name string, auth *clientcmdapi.AuthInfo) *User {
	t.Helper()
	ca, err := os.ReadFile(f.State.Hub.PKI.CACert)
	if err != nil {
		t.Fatal(err)
	}
	config := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"hub": {Server: f.State.Hub.URL, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"user": auth},
		Contexts:       map[string]*clientcmdapi.Context{"hub": {Cluster: "hub", AuthInfo: "user"}},
		CurrentContext: "hub",
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(config, path); err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.NewDefaultClientConfig(config, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &User{Name: name, Kubeconfig: path, Config: restConfig}
}

// Grant binds a new ClusterRole with the given rule to a user on the hub,
// and removes both when the test ends.
func (f *Framework) Grant(t testing.TB, user string, rule rbacv1.PolicyRule) {
	t.Helper()
	bindNewClusterRole(t, f.Hub(t), user, rule)
}

// GrantInMember binds a new ClusterRole with the given rules to a user in a
// member cluster, and removes both when the test ends.
func (f *Framework) GrantInMember(t testing.TB, cluster, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	bindNewClusterRole(t, f.Member(t, cluster), user, rules...)
}

func bindNewClusterRole(t testing.TB, client kubernetes.Interface, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	name := "e2e:" + strings.NewReplacer(":", "-", "/", "-").Replace(user) + ":" + fmt.Sprint(time.Now().UnixNano())
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      rules,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = client.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// CreateNamespace makes a namespace with a generated name and deletes it
// when the test ends.
func CreateNamespace(t testing.TB, client kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// KubectlResult is what one kubectl run printed.
type KubectlResult struct {
	Stdout, Stderr string
	Err            error
}

// Kubectl runs the real kubectl binary ($KUBECTL_BIN, else kubectl on the
// PATH) against a kubeconfig, with a time limit.
func Kubectl(t testing.TB, kubeconfig string, args ...string) KubectlResult {
	t.Helper()
	return KubectlWithEnv(t, kubeconfig, nil, args...)
}

// KubectlWithEnv is Kubectl with extra environment variables.
func KubectlWithEnv(t testing.TB, kubeconfig string, env []string, args ...string) KubectlResult {
	t.Helper()
	return KubectlArgs(t, env, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// KubectlArgs runs kubectl with exactly the given arguments; a plugin's
// name must come before any flag.
func KubectlArgs(t testing.TB, env []string, args ...string) KubectlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, KubectlBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("kubectl %s did not finish within 2 minutes: %w", strings.Join(args, " "), ctx.Err())
	}
	return KubectlResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// MustKubectl runs kubectl and fails the test if it fails.
func MustKubectl(t testing.TB, kubeconfig string, args ...string) string {
	t.Helper()
	r := Kubectl(t, kubeconfig, args...)
	if r.Err != nil {
		t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// KubectlBinary returns the kubectl to run. A missing kubectl fails the
// test: the suite never skips for a missing component.
func KubectlBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("KUBECTL_BIN"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("no kubectl: set KUBECTL_BIN or run through make test-e2e, which builds it")
	}
	return bin
}

// MemberKubeconfig writes a kubeconfig that reaches member cluster through
// the hub and switchboard, with the user's own hub credentials.
func (u *User) MemberKubeconfig(t testing.TB, cluster string) string {
	t.Helper()
	hub, err := clientcmd.LoadFromFile(u.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	member, err := kubeconfig.ForMember(hub, "", cluster, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), cluster+".kubeconfig")
	if err := clientcmd.WriteToFile(*member, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// MemberConfig is a client configuration for member cluster through the
// hub and switchboard, as the user.
func (u *User) MemberConfig(t testing.TB, cluster string) *rest.Config {
	t.Helper()
	config, err := clientcmd.BuildConfigFromFlags("", u.MemberKubeconfig(t, cluster))
	if err != nil {
		t.Fatal(err)
	}
	return config
}

// StartKubectl starts kubectl in the background and returns it with its
// output; it is killed when the test ends.
func StartKubectl(t testing.TB, kubeconfig string, env []string, args ...string) (*exec.Cmd, *SyncBuffer) {
	t.Helper()
	cmd := exec.Command(KubectlBinary(t), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One Wait per process: tests that want to know when it ends use Exited.
	done := make(chan struct{})
	exited.Store(cmd, done)
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		exited.Delete(cmd)
	})
	return cmd, out
}

// exited maps each kubectl StartKubectl started to a channel closed when it
// has exited.
var exited sync.Map

// Exited is closed when a kubectl that StartKubectl started has exited;
// cmd.ProcessState is then set.
func Exited(cmd *exec.Cmd) <-chan struct{} {
	done, ok := exited.Load(cmd)
	if !ok {
		panic("Exited: not a kubectl StartKubectl started and the test still runs")
	}
	return done.(chan struct{})
}

// SyncBuffer is a bytes.Buffer safe to read while a process writes it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitForOutput waits until out contains want, or fails the test.
func WaitForOutput(t testing.TB, out *SyncBuffer, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%q did not appear within %s; output so far:\n%s", want, timeout, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FleetKubeconfig writes a kubeconfig for the fleet endpoint of the
// Clusters that selector picks, with the user's own hub credentials, as
// kubectl switchboard kubeconfig --fleet writes it.
func (u *User) FleetKubeconfig(t testing.TB, selector string) string {
	t.Helper()
	hub, err := clientcmd.LoadFromFile(u.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := kubeconfig.ForFleet(hub, "", selector, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fleet.kubeconfig")
	if err := clientcmd.WriteToFile(*fleet, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// FleetConfig is a client configuration for the fleet endpoint, as the user.
func (u *User) FleetConfig(t testing.TB, selector string) *rest.Config {
	t.Helper()
	config, err := clientcmd.BuildConfigFromFlags("", u.FleetKubeconfig(t, selector))
	if err != nil {
		t.Fatal(err)
	}
	return config
}
