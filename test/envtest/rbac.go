package envtest

import (
	"os"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-tools/pkg/rbac"
)

// AsUser grants user the rules of the kubebuilder RBAC markers in
// markerFile and returns cfg impersonating user, so that a test fails when
// the markers do not allow what the code does.
func AsUser(t *testing.T, cfg *rest.Config, user, markerFile string) *rest.Config {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := rbacv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(markerFile)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}}
	for _, line := range strings.Split(string(data), "\n") {
		m, ok := strings.CutPrefix(strings.TrimSpace(line), "// ")
		if !ok || !strings.HasPrefix(m, "+kubebuilder:rbac:") {
			continue
		}
		v, err := rbac.RuleDefinition.Parse(m)
		if err != nil {
			t.Fatalf("%s: %q: %v", markerFile, m, err)
		}
		r := v.(rbac.Rule)
		role.Rules = append(role.Rules, r.ToRule())
	}
	if len(role.Rules) == 0 {
		t.Fatalf("%s has no RBAC markers", markerFile)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	restricted := rest.CopyConfig(cfg)
	restricted.Impersonate = rest.ImpersonationConfig{UserName: user}
	return restricted
}
