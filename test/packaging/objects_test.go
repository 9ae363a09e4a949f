package packaging

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// installation holds the objects of one install of layerset-csi, by name,
// whether helm rendered them or an API server holds them.
type installation struct {
	namespaces          map[string]*corev1.Namespace
	csiDrivers          map[string]*storagev1.CSIDriver
	daemonSets          map[string]*appsv1.DaemonSet
	deployments         map[string]*appsv1.Deployment
	serviceAccounts     map[string]*corev1.ServiceAccount
	clusterRoles        map[string]*rbacv1.ClusterRole
	clusterRoleBindings map[string]*rbacv1.ClusterRoleBinding
	roles               map[string]*rbacv1.Role // namespace/name
	roleBindings        map[string]*rbacv1.RoleBinding
	storageClasses      map[string]*storagev1.StorageClass
	services            map[string]*corev1.Service
	crds                map[string]*apiextensionsv1.CustomResourceDefinition
	// other counts objects of any other kind, by kind.
	other map[string]int
}

func newInstallation() *installation {
	return &installation{
		namespaces:          map[string]*corev1.Namespace{},
		csiDrivers:          map[string]*storagev1.CSIDriver{},
		daemonSets:          map[string]*appsv1.DaemonSet{},
		deployments:         map[string]*appsv1.Deployment{},
		serviceAccounts:     map[string]*corev1.ServiceAccount{},
		clusterRoles:        map[string]*rbacv1.ClusterRole{},
		clusterRoleBindings: map[string]*rbacv1.ClusterRoleBinding{},
		roles:               map[string]*rbacv1.Role{},
		roleBindings:        map[string]*rbacv1.RoleBinding{},
		storageClasses:      map[string]*storagev1.StorageClass{},
		services:            map[string]*corev1.Service{},
		crds:                map[string]*apiextensionsv1.CustomResourceDefinition{},
		other:               map[string]int{},
	}
}

// parseManifests decodes helm's or deploy/'s multi-document YAML into an
// installation.
func parseManifests(t *testing.T, text string) *installation {
	t.Helper()
	in := newInstallation()
	for _, u := range decodeDocuments(t, text) {
		in.add(t, u)
	}
	return in
}

// decodeDocuments decodes multi-document YAML, skipping empty documents and
// failing on any that is not a Kubernetes object.
func decodeDocuments(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("YAML does not parse: %v", err)
		}
		if obj == nil {
			continue // an empty document, e.g. a template that rendered nothing
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			t.Fatalf("document without apiVersion, kind or name: %v", obj)
		}
		out = append(out, u)
	}
}

// add files one object under its kind.
func (in *installation) add(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	key := u.GetName()
	if u.GetNamespace() != "" && (u.GetKind() == "Role" || u.GetKind() == "RoleBinding") {
		key = u.GetNamespace() + "/" + key
	}
	switch u.GetKind() {
	case "Namespace":
		in.namespaces[key] = convert[corev1.Namespace](t, u)
	case "CSIDriver":
		in.csiDrivers[key] = convert[storagev1.CSIDriver](t, u)
	case "DaemonSet":
		in.daemonSets[key] = convert[appsv1.DaemonSet](t, u)
	case "Deployment":
		in.deployments[key] = convert[appsv1.Deployment](t, u)
	case "ServiceAccount":
		in.serviceAccounts[key] = convert[corev1.ServiceAccount](t, u)
	case "ClusterRole":
		in.clusterRoles[key] = convert[rbacv1.ClusterRole](t, u)
	case "ClusterRoleBinding":
		in.clusterRoleBindings[key] = convert[rbacv1.ClusterRoleBinding](t, u)
	case "Role":
		in.roles[key] = convert[rbacv1.Role](t, u)
	case "RoleBinding":
		in.roleBindings[key] = convert[rbacv1.RoleBinding](t, u)
	case "StorageClass":
		in.storageClasses[key] = convert[storagev1.StorageClass](t, u)
	case "Service":
		in.services[key] = convert[corev1.Service](t, u)
	case "CustomResourceDefinition":
		in.crds[key] = convert[apiextensionsv1.CustomResourceDefinition](t, u)
	default:
		in.other[u.GetKind()]++
	}
}

// convert turns an unstructured object into its typed form, rejecting
// fields the type does not have: a misspelt field in a template would
// otherwise vanish silently.
func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &out
}

// readInstallation lists what the API server holds of an installation: the
// objects labelled part-of layerset-csi, and the namespaces named.
func readInstallation(ctx context.Context, t *testing.T, c client.Client, namespaces ...string) *installation {
	t.Helper()
	in := newInstallation()
	sel := client.MatchingLabels{"app.kubernetes.io/part-of": "layerset-csi"}
	list := func(l client.ObjectList) {
		t.Helper()
		if err := c.List(ctx, l, sel); err != nil {
			t.Fatalf("list %T: %v", l, err)
		}
	}
	var (
		drivers  storagev1.CSIDriverList
		dss      appsv1.DaemonSetList
		deps     appsv1.DeploymentList
		sas      corev1.ServiceAccountList
		crs      rbacv1.ClusterRoleList
		crbs     rbacv1.ClusterRoleBindingList
		roles    rbacv1.RoleList
		rbs      rbacv1.RoleBindingList
		classes  storagev1.StorageClassList
		services corev1.ServiceList
		crds     apiextensionsv1.CustomResourceDefinitionList
	)
	for _, l := range []client.ObjectList{&drivers, &dss, &deps, &sas, &crs, &crbs, &roles, &rbs, &classes, &services, &crds} {
		list(l)
	}
	for i := range drivers.Items {
		in.csiDrivers[drivers.Items[i].Name] = &drivers.Items[i]
	}
	for i := range dss.Items {
		in.daemonSets[dss.Items[i].Name] = &dss.Items[i]
	}
	for i := range deps.Items {
		in.deployments[deps.Items[i].Name] = &deps.Items[i]
	}
	for i := range sas.Items {
		in.serviceAccounts[sas.Items[i].Name] = &sas.Items[i]
	}
	for i := range crs.Items {
		in.clusterRoles[crs.Items[i].Name] = &crs.Items[i]
	}
	for i := range crbs.Items {
		in.clusterRoleBindings[crbs.Items[i].Name] = &crbs.Items[i]
	}
	for i := range roles.Items {
		in.roles[roles.Items[i].Namespace+"/"+roles.Items[i].Name] = &roles.Items[i]
	}
	for i := range rbs.Items {
		in.roleBindings[rbs.Items[i].Namespace+"/"+rbs.Items[i].Name] = &rbs.Items[i]
	}
	for i := range classes.Items {
		in.storageClasses[classes.Items[i].Name] = &classes.Items[i]
	}
	for i := range services.Items {
		in.services[services.Items[i].Name] = &services.Items[i]
	}
	for i := range crds.Items {
		in.crds[crds.Items[i].Name] = &crds.Items[i]
	}
	for _, n := range namespaces {
		var ns corev1.Namespace
		if err := c.Get(ctx, client.ObjectKey{Name: n}, &ns); err != nil {
			t.Fatalf("namespace %s: %v", n, err)
		}
		in.namespaces[n] = &ns
	}
	return in
}
