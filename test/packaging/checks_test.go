package packaging

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const (
	driverName = "csi.layerset.io"
	release    = "layerset-csi"
	namespace  = "layerset-csi"
	nodeName   = release + "-node"
	ctrlName   = release + "-controller"
)

// want is what one configuration of the chart must install.
type want struct {
	kubeletDir    string
	storeDir      string
	image         string
	registrar     bool // node-driver-registrar sidecar, else built-in registration
	livenessProbe bool // livenessprobe sidecar, else the plugin's /healthz
	provisioner   bool // csi-provisioner sidecar, else --provisioner
	// externalResizer: the csi-resizer sidecar and --resizer=none, else
	// --resizer=builtin.
	externalResizer bool
	// quota and projectIDs are the node plugin's --quota and --project-ids.
	quota, projectIDs string
	leaderElect       bool
	// leases are the lease duration, renew deadline and retry period.
	leases   [3]string
	replicas int32
	// storageClass holds the parameters of the chart's StorageClass; nil:
	// no class.
	storageClass map[string]string
	crds         bool
	// referenced lists the namespaces ConfigMap and Secret access is
	// confined to; empty means get in every namespace.
	referenced []string
	// metricsServices: a headless metrics Service per component.
	metricsServices bool
}

// defaults is what values.yaml as shipped installs.
func defaults(t *testing.T) want {
	return want{
		kubeletDir:    "/var/lib/kubelet",
		storeDir:      "/var/lib/layerset",
		image:         "ghcr.io/layerset/layerset-csi:" + appVersion(t),
		registrar:     true,
		livenessProbe: true,
		provisioner:   true,
		quota:         "auto",
		projectIDs:    "2000000000-2099999999",
		leaderElect:   true,
		leases:        [3]string{"15s", "10s", "2s"},
		replicas:      1,
		crds:          true,
	}
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml has no appVersion (%v)", err)
	}
	return c.AppVersion
}

// checkInstallation asserts everything about an installation that w
// determines.
func checkInstallation(t *testing.T, in *installation, w want) {
	t.Helper()
	t.Run("CSIDriver", func(t *testing.T) { checkCSIDriver(t, in) })
	t.Run("node DaemonSet", func(t *testing.T) { checkNodeDaemonSet(t, in, w) })
	t.Run("controller Deployment", func(t *testing.T) { checkController(t, in, w) })
	t.Run("RBAC", func(t *testing.T) { checkRBAC(t, in, w) })
	t.Run("StorageClass", func(t *testing.T) { checkStorageClass(t, in, w) })
	t.Run("CRDs", func(t *testing.T) { checkCRDs(t, in, w) })
	t.Run("metrics Services", func(t *testing.T) { checkMetricsServices(t, in, w) })
}

func checkMetricsServices(t *testing.T, in *installation, w want) {
	if !w.metricsServices {
		if len(in.services) > 0 {
			t.Errorf("Services %v, want none", slices.Sorted(maps.Keys(in.services)))
		}
		return
	}
	for _, c := range []string{"node", "controller"} {
		svc := in.services[release+"-"+c+"-metrics"]
		if svc == nil {
			t.Errorf("no Service %s-%s-metrics among %v", release, c, slices.Sorted(maps.Keys(in.services)))
			continue
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector["app.kubernetes.io/component"] != c ||
			len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
			t.Errorf("Service %s: %+v, want a headless Service for the %s pods' metrics port", svc.Name, svc.Spec, c)
		}
	}
}

func checkCSIDriver(t *testing.T, in *installation) {
	d := in.csiDrivers[driverName]
	if d == nil {
		t.Fatalf("no CSIDriver %s among %v", driverName, slices.Sorted(maps.Keys(in.csiDrivers)))
	}
	s := d.Spec
	if s.AttachRequired == nil || *s.AttachRequired {
		t.Errorf("attachRequired %v, want false", deref(s.AttachRequired))
	}
	if s.PodInfoOnMount == nil || !*s.PodInfoOnMount {
		t.Errorf("podInfoOnMount %v, want true", deref(s.PodInfoOnMount))
	}
	if s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.NoneFSGroupPolicy {
		t.Errorf("fsGroupPolicy %v, want None: a recursive chown would copy every lower file up", deref(s.FSGroupPolicy))
	}
	modes := []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral}
	if !reflect.DeepEqual(s.VolumeLifecycleModes, modes) {
		t.Errorf("volumeLifecycleModes %v, want %v", s.VolumeLifecycleModes, modes)
	}
}

func checkNodeDaemonSet(t *testing.T, in *installation, w want) {
	ds := in.daemonSets[nodeName]
	if ds == nil {
		t.Fatalf("no DaemonSet %s among %v", nodeName, slices.Sorted(maps.Keys(in.daemonSets)))
	}
	if ds.Namespace != namespace {
		t.Errorf("DaemonSet in namespace %q, want %q", ds.Namespace, namespace)
	}
	pod := ds.Spec.Template.Spec
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", pod.PriorityClassName)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == ""
	}) {
		t.Errorf("tolerations %v: want one that tolerates every taint (operator Exists, no key, no effect)", pod.Tolerations)
	}
	if pod.ServiceAccountName != nodeName || in.serviceAccounts[nodeName] == nil {
		t.Errorf("serviceAccountName %q, want the rendered ServiceAccount %s", pod.ServiceAccountName, nodeName)
	}
	pluginDir := w.kubeletDir + "/plugins/" + driverName
	wantHostPaths := map[string]string{
		"kubelet-dir":      w.kubeletDir,
		"socket-dir":       pluginDir,
		"registration-dir": w.kubeletDir + "/plugins_registry",
		"store":            w.storeDir,
		"dev":              "/dev",
	}
	gotHostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			gotHostPaths[v.Name] = v.HostPath.Path
		}
	}
	if !reflect.DeepEqual(gotHostPaths, wantHostPaths) {
		t.Errorf("host paths %v, want exactly %v", gotHostPaths, wantHostPaths)
	}

	plugin := container(t, pod.Containers, "layerset-csi")
	if plugin.Image != w.image {
		t.Errorf("plugin image %q, want %q", plugin.Image, w.image)
	}
	if sc := plugin.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Errorf("plugin securityContext %+v, want privileged: it mounts", sc)
	}
	for _, m := range []struct{ name, path string }{{"kubelet-dir", w.kubeletDir}, {"store", w.storeDir}} {
		vm := mount(plugin, m.name)
		if vm == nil || vm.MountPath != m.path || vm.MountPropagation == nil || *vm.MountPropagation != corev1.MountPropagationBidirectional {
			t.Errorf("plugin mount of %s: %+v, want %s with Bidirectional propagation", m.name, vm, m.path)
		}
	}
	// Loop devices made after the container started are only in the
	// host's /dev.
	if vm := mount(plugin, "dev"); vm == nil || vm.MountPath != "/dev" {
		t.Errorf("plugin mount of the host's /dev: %+v, want it at /dev", vm)
	}
	args := plugin.Args
	wantArgs := []string{"node", "--endpoint=unix:///csi/csi.sock", "--node-id=$(NODE_NAME)", "--root=" + w.storeDir,
		"--quota=" + w.quota, "--project-ids=" + w.projectIDs}
	if !w.registrar {
		// The kubelet dials what the plugin announces: the socket's host path.
		wantArgs = append(wantArgs, "--registration-dir=/registration", "--kubelet-registration-path="+pluginDir+"/csi.sock")
		if vm := mount(plugin, "registration-dir"); vm == nil || vm.MountPath != "/registration" {
			t.Errorf("built-in registration without registration-dir mounted at /registration: %+v", vm)
		}
	}
	if w.registrar && slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--registration-dir") }) {
		t.Errorf("plugin args %q: --registration-dir next to the registrar sidecar registers the driver twice", args)
	}
	if !w.livenessProbe {
		wantArgs = append(wantArgs, "--health-address=:9809")
	}
	for _, a := range wantArgs {
		if !slices.Contains(args, a) {
			t.Errorf("plugin args %q lack %q", args, a)
		}
	}
	if env := envVar(plugin, "NODE_NAME"); env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil || env.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME %+v, want it from spec.nodeName", env)
	}
	if p := plugin.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != 9809 {
		t.Errorf("plugin liveness probe %+v, want GET /healthz on 9809", p)
	}

	var names []string
	for _, c := range pod.Containers {
		names = append(names, c.Name)
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s requests %v, want cpu and memory", c.Name, c.Resources.Requests)
		}
	}
	wantNames := []string{"layerset-csi"}
	if w.registrar {
		wantNames = append(wantNames, "node-driver-registrar")
		reg := container(t, pod.Containers, "node-driver-registrar")
		if a := "--kubelet-registration-path=" + pluginDir + "/csi.sock"; !slices.Contains(reg.Args, a) {
			t.Errorf("registrar args %q lack %q", reg.Args, a)
		}
		if vm := mount(reg, "registration-dir"); vm == nil || vm.MountPath != "/registration" {
			t.Errorf("registrar mount of registration-dir %+v, want /registration", vm)
		}
	}
	if w.livenessProbe {
		wantNames = append(wantNames, "liveness-probe")
		lp := container(t, pod.Containers, "liveness-probe")
		if !slices.Contains(lp.Args, "--http-endpoint=:9809") {
			t.Errorf("livenessprobe args %q lack --http-endpoint=:9809", lp.Args)
		}
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("node containers %q, want %q", names, wantNames)
	}
	for _, c := range pod.Containers {
		if c.Name == "layerset-csi" {
			continue
		}
		if sc := c.SecurityContext; sc == nil || sc.Privileged != nil && *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("sidecar %s securityContext %+v: want unprivileged with a read-only root", c.Name, sc)
		}
	}
}

func checkController(t *testing.T, in *installation, w want) {
	d := in.deployments[ctrlName]
	if d == nil {
		t.Fatalf("no Deployment %s among %v", ctrlName, slices.Sorted(maps.Keys(in.deployments)))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != w.replicas {
		t.Errorf("replicas %v, want %d", deref(d.Spec.Replicas), w.replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != ctrlName || in.serviceAccounts[ctrlName] == nil {
		t.Errorf("serviceAccountName %q, want the rendered ServiceAccount %s", pod.ServiceAccountName, ctrlName)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and a non-zero runAsUser", psc)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("controller volume %s is a hostPath (%s); the controller touches no node", v.Name, v.HostPath.Path)
		}
	}
	var names []string
	for _, c := range pod.Containers {
		names = append(names, c.Name)
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Privileged != nil && *sc.Privileged ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s securityContext %+v, want read-only root, no privilege escalation, all capabilities dropped", c.Name, sc)
		}
		if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s runs as root", c.Name)
		}
	}
	ctrl := container(t, pod.Containers, "layerset-csi")
	if ctrl.Image != w.image {
		t.Errorf("controller image %q, want %q", ctrl.Image, w.image)
	}
	if got := slices.Contains(ctrl.Args, "--leader-elect"); got != w.leaderElect {
		t.Errorf("controller args %q: --leader-elect %t, want %t", ctrl.Args, got, w.leaderElect)
	}
	checkLeaseArgs(t, "controller", ctrl.Args, "--leader-elect-", w)
	if got := slices.Contains(ctrl.Args, "--provisioner"); got == w.provisioner {
		t.Errorf("controller args %q: --provisioner %t, want %t", ctrl.Args, got, !w.provisioner)
	}
	wantResizer := "--resizer=builtin"
	if w.externalResizer {
		wantResizer = "--resizer=none" // the sidecar resizes, never both
	}
	if got := slices.DeleteFunc(slices.Clone(ctrl.Args), func(a string) bool { return !strings.HasPrefix(a, "--resizer") }); !slices.Equal(got, []string{wantResizer}) {
		t.Errorf("controller args %q: resizer flags %q, want %q", ctrl.Args, got, wantResizer)
	}
	wantNames := []string{"layerset-csi"}
	if w.provisioner {
		wantNames = append(wantNames, "csi-provisioner")
		p := container(t, pod.Containers, "csi-provisioner")
		for _, a := range []string{"--csi-address=/csi/csi.sock", "--feature-gates=Topology=true", "--extra-create-metadata"} {
			if !slices.Contains(p.Args, a) {
				t.Errorf("csi-provisioner args %q lack %q", p.Args, a)
			}
		}
		if got := slices.Contains(p.Args, "--leader-election"); got != w.leaderElect {
			t.Errorf("csi-provisioner args %q: --leader-election %t, want %t", p.Args, got, w.leaderElect)
		}
		checkLeaseArgs(t, "csi-provisioner", p.Args, "--leader-election-", w)
	}
	if w.externalResizer {
		wantNames = append(wantNames, "csi-resizer")
		r := container(t, pod.Containers, "csi-resizer")
		if !strings.HasPrefix(r.Image, "registry.k8s.io/sig-storage/csi-resizer:") {
			t.Errorf("csi-resizer image %q, want the upstream one", r.Image)
		}
		// Online expansion: no pods to watch, so no RBAC on pods.
		for _, a := range []string{"--csi-address=/csi/csi.sock", "--handle-volume-inuse-error=false", "--http-endpoint=:9811"} {
			if !slices.Contains(r.Args, a) {
				t.Errorf("csi-resizer args %q lack %q", r.Args, a)
			}
		}
		if vm := mount(r, "socket-dir"); vm == nil || vm.MountPath != "/csi" {
			t.Errorf("csi-resizer mount of the controller's socket %+v, want socket-dir at /csi", vm)
		}
		if got := slices.Contains(r.Args, "--leader-election"); got != w.leaderElect {
			t.Errorf("csi-resizer args %q: --leader-election %t, want %t", r.Args, got, w.leaderElect)
		}
		checkLeaseArgs(t, "csi-resizer", r.Args, "--leader-election-", w)
		if p := r.LivenessProbe; w.leaderElect && (p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/leader-election") {
			t.Errorf("csi-resizer liveness probe %+v, want GET /healthz/leader-election", p)
		}
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("controller containers %q, want %q", names, wantNames)
	}
}

// checkLeaseArgs checks that args carry the lease durations under the
// component's flag prefix when it elects a leader, and none otherwise.
func checkLeaseArgs(t *testing.T, component string, args []string, prefix string, w want) {
	t.Helper()
	for i, name := range []string{"lease-duration", "renew-deadline", "retry-period"} {
		arg := prefix + name + "=" + w.leases[i]
		if got := slices.Contains(args, arg); got != w.leaderElect {
			t.Errorf("%s args %q: %s %t, want %t", component, args, arg, got, w.leaderElect)
		}
	}
}

// Each component's permissions, exactly: a rule added to the chart without
// being added here fails, and so does one that goes missing.
func wantNodeRules(everyNamespace bool) []string {
	r := []string{
		"layerset.io/layersets:get,list,watch",
		"layerset.io/nodecaches:create,get,list,patch,update,watch",
		"layerset.io/nodecaches/status:patch,update",
		"core/persistentvolumes:get,list,watch",
		"core/nodes:get,list,watch",
		"core/events:create,patch",
		"events.k8s.io/events:create,patch",
	}
	if everyNamespace {
		r = append(r, "core/configmaps:get", "core/secrets:get")
	}
	return r
}

func wantControllerRules(everyNamespace bool) []string {
	r := []string{
		"layerset.io/layersets:get,list,patch,update,watch",
		"layerset.io/layersets/status:get,patch,update",
		"layerset.io/nodecaches:get,list,watch",
		"core/persistentvolumes:create,delete,get,list,patch,update,watch",
		"core/persistentvolumeclaims:get,list,patch,update,watch",
		// The resizer's, built in or the sidecar's: the claim's capacity
		// and conditions.
		"core/persistentvolumeclaims/status:patch",
		"storage.k8s.io/storageclasses:get,list,watch",
		"storage.k8s.io/csinodes:get,list,watch",
		"core/nodes:get,list,watch",
		"core/events:create,patch",
		"events.k8s.io/events:create,patch",
	}
	if everyNamespace {
		r = append(r, "core/secrets:get,list,watch")
	}
	return r
}

// permissions flattens rules to sorted "group/resource:verbs" strings,
// failing on wildcards, resource names and non-resource URLs.
func permissions(t *testing.T, what string, rules []rbacv1.PolicyRule) []string {
	t.Helper()
	verbs := map[string][]string{}
	for _, r := range rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("%s: unexpected rule %+v", what, r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("%s: wildcard in rule %+v", what, r)
					}
					if g == "" {
						g = "core"
					}
					verbs[g+"/"+res] = append(verbs[g+"/"+res], v)
				}
			}
		}
	}
	var out []string
	for k, v := range verbs {
		sort.Strings(v)
		out = append(out, k+":"+strings.Join(slices.Compact(v), ","))
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func checkRBAC(t *testing.T, in *installation, w want) {
	every := len(w.referenced) == 0
	for _, c := range []struct {
		name  string
		rules []string
	}{{nodeName, wantNodeRules(every)}, {ctrlName, wantControllerRules(every)}} {
		cr := in.clusterRoles[c.name]
		if cr == nil {
			t.Errorf("no ClusterRole %s among %v", c.name, slices.Sorted(maps.Keys(in.clusterRoles)))
			continue
		}
		if got := permissions(t, "ClusterRole "+c.name, cr.Rules); !reflect.DeepEqual(got, sorted(c.rules)) {
			t.Errorf("ClusterRole %s grants\n  %s\nwant exactly\n  %s", c.name, strings.Join(got, "\n  "), strings.Join(sorted(c.rules), "\n  "))
		}
		b := in.clusterRoleBindings[c.name]
		if b == nil || b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != c.name ||
			len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != c.name || b.Subjects[0].Namespace != namespace {
			t.Errorf("ClusterRoleBinding %s %+v, want ClusterRole %s bound to ServiceAccount %s/%s", c.name, b, c.name, namespace, c.name)
		}
	}

	wantRoles := map[string][]string{}
	if w.leaderElect {
		wantRoles[namespace+"/"+ctrlName+"-leader-election"] = []string{"coordination.k8s.io/leases:create,get,update"}
	}
	for _, ns := range w.referenced {
		wantRoles[ns+"/"+nodeName+"-referenced"] = []string{"core/configmaps:get", "core/secrets:get"}
		wantRoles[ns+"/"+ctrlName+"-referenced"] = []string{"core/secrets:get"}
	}
	gotRoles := map[string][]string{}
	for k, r := range in.roles {
		gotRoles[k] = permissions(t, "Role "+k, r.Rules)
	}
	if !reflect.DeepEqual(gotRoles, wantRoles) {
		t.Errorf("Roles %v, want %v", gotRoles, wantRoles)
	}
	for k := range wantRoles {
		b := in.roleBindings[k]
		ns, name, _ := strings.Cut(k, "/")
		sa := nodeName
		if strings.HasPrefix(name, ctrlName) {
			sa = ctrlName
		}
		if b == nil || b.RoleRef.Kind != "Role" || b.RoleRef.Name != name ||
			len(b.Subjects) != 1 || b.Subjects[0].Name != sa || b.Subjects[0].Namespace != namespace {
			t.Errorf("RoleBinding %s in %s: %+v, want Role %s bound to %s/%s", name, ns, b, name, namespace, sa)
		}
	}
	if len(in.roleBindings) != len(wantRoles) {
		t.Errorf("%d RoleBindings %v, want %d", len(in.roleBindings), slices.Sorted(maps.Keys(in.roleBindings)), len(wantRoles))
	}
}

func checkStorageClass(t *testing.T, in *installation, w want) {
	if w.storageClass == nil {
		if len(in.storageClasses) > 0 {
			t.Errorf("StorageClasses %v, want none", slices.Sorted(maps.Keys(in.storageClasses)))
		}
		return
	}
	sc := in.storageClasses["layerset"]
	if sc == nil {
		t.Fatalf("no StorageClass layerset among %v", slices.Sorted(maps.Keys(in.storageClasses)))
	}
	if sc.Provisioner != driverName {
		t.Errorf("provisioner %q, want %q", sc.Provisioner, driverName)
	}
	if !reflect.DeepEqual(sc.Parameters, w.storageClass) {
		t.Errorf("parameters %v, want %v", sc.Parameters, w.storageClass)
	}
	if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("volumeBindingMode %v, want WaitForFirstConsumer: a volume lives on its pod's node", deref(sc.VolumeBindingMode))
	}
	if sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
		t.Errorf("allowVolumeExpansion %v, want true: a claim's request is its volume's limit, and may grow", deref(sc.AllowVolumeExpansion))
	}
}

// checkCRDs compares the CRDs installed with config/crd, their source: the
// chart's copies must be current and Helm's YAML round trip lossless.
func checkCRDs(t *testing.T, in *installation, w want) {
	src := sourceCRDs(t)
	if !w.crds {
		if len(in.crds) > 0 {
			t.Errorf("CRDs %v installed with crds.install=false", slices.Sorted(maps.Keys(in.crds)))
		}
		return
	}
	if !reflect.DeepEqual(slices.Sorted(maps.Keys(in.crds)), slices.Sorted(maps.Keys(src))) {
		t.Fatalf("CRDs %v, want those of config/crd: %v", slices.Sorted(maps.Keys(in.crds)), slices.Sorted(maps.Keys(src)))
	}
	for name, crd := range in.crds {
		// The API server defaults what the file leaves out (conversion
		// strategy, ...): compare with the same defaults applied.
		got, want := crd.DeepCopy(), src[name].DeepCopy()
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(got)
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(want)
		if !reflect.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("CRD %s differs from config/crd (run make deploy-manifests): %s", name, firstDifference(t, got.Spec, want.Spec))
		}
		if crd.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s annotations %v: want helm.sh/resource-policy: keep", name, crd.Annotations)
		}
	}
}

// sourceCRDs reads config/crd/*.yaml.
func sourceCRDs(t *testing.T) map[string]*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "config", "crd", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd (%v)", err)
	}
	out := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[crd.Name] = &crd
	}
	return out
}

// firstDifference shows where two values' YAML forms first differ.
func firstDifference(t *testing.T, got, want any) string {
	t.Helper()
	g, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	for i := range min(len(gl), len(wl)) {
		if gl[i] != wl[i] {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, gl[i], wl[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(gl), len(wl))
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func mount(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func deref[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}
