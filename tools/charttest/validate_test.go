package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// builtinKinds are the only API versions the chart may use: GA versions served by every release
// the chart's kubeVersion allows. A beta or removed version fails even when the scheme knows it.
var builtinKinds = map[schema.GroupVersionKind]bool{
	{Version: "v1", Kind: "ServiceAccount"}:                                true,
	{Version: "v1", Kind: "Secret"}:                                        true,
	{Version: "v1", Kind: "Service"}:                                       true,
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                     true,
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:          true,
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}: true,
	{Group: "batch", Version: "v1", Kind: "Job"}:                           true,
	{Group: "batch", Version: "v1", Kind: "CronJob"}:                       true,
	{Version: "v1", Kind: "ConfigMap"}:                                     true,
}

// strictDecoder fails on unknown and duplicate fields, as `kubectl apply --validate=strict` and
// the API server's strict field validation do.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decode turns a manifest into its typed object: a client-go type for built-in kinds, one of the
// minimal custom-resource types below otherwise. Unknown fields are errors either way.
func decode(m manifest) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(m.YAML), &tm); err != nil {
		return nil, err
	}
	gvk := tm.GroupVersionKind()
	if cr, ok := customKinds[gvk]; ok {
		obj := cr()
		js, err := yaml.YAMLToJSONStrict([]byte(m.YAML))
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			return nil, fmt.Errorf("%s: %w", gvk, err)
		}
		return obj, nil
	}
	if !builtinKinds[gvk] {
		return nil, fmt.Errorf("%s is not an API version this chart may use", gvk)
	}
	obj, _, err := strictDecoder.Decode([]byte(m.YAML), nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// validate decodes a manifest strictly and checks what the API server's validation would reject
// and client-go's types cannot express: names, labels, selectors, env and port names, references
// between containers, volumes and probes.
func validate(m manifest) error {
	obj, err := decode(m)
	if err != nil {
		return err
	}
	var errs field.ErrorList
	if om, ok := obj.(metav1.Object); ok {
		errs = append(errs, validateMeta(om, m.Kind)...)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		errs = append(errs, validateSelector(o.Spec.Selector, o.Spec.Template.Labels, field.NewPath("spec", "selector"))...)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))...)
		errs = append(errs, metavalidation.ValidateLabels(o.Spec.Template.Labels, field.NewPath("spec", "template", "metadata", "labels"))...)
	case *batchv1.Job:
		errs = append(errs, validateJobSpec(&o.Spec, field.NewPath("spec"))...)
	case *batchv1.CronJob:
		if len(o.Name) > 52 {
			errs = append(errs, field.TooLong(field.NewPath("metadata", "name"), o.Name, 52))
		}
		if o.Spec.Schedule == "" || len(strings.Fields(o.Spec.Schedule)) != 5 && !strings.HasPrefix(o.Spec.Schedule, "@") {
			errs = append(errs, field.Invalid(field.NewPath("spec", "schedule"), o.Spec.Schedule, "want five cron fields or a @descriptor"))
		}
		errs = append(errs, validateJobSpec(&o.Spec.JobTemplate.Spec, field.NewPath("spec", "jobTemplate", "spec"))...)
	case *policyv1.PodDisruptionBudget:
		if o.Spec.Selector == nil || len(o.Spec.Selector.MatchLabels) == 0 {
			errs = append(errs, field.Required(field.NewPath("spec", "selector"), "an empty selector matches every pod in the namespace"))
		}
		if (o.Spec.MaxUnavailable == nil) == (o.Spec.MinAvailable == nil) {
			errs = append(errs, field.Invalid(field.NewPath("spec"), "", "exactly one of minAvailable and maxUnavailable"))
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		if o.Spec.MinReplicas != nil && *o.Spec.MinReplicas > o.Spec.MaxReplicas {
			errs = append(errs, field.Invalid(field.NewPath("spec", "minReplicas"), *o.Spec.MinReplicas, "above maxReplicas"))
		}
	case *corev1.Service:
		for i, p := range o.Spec.Ports {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "ports").Index(i).Child("name"), p.Name, msg))
			}
		}
	case *corev1.Secret:
		for k := range o.StringData {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("stringData").Key(k), k, msg))
			}
		}
	case *scaledObject:
		errs = append(errs, o.validate()...)
	case *triggerAuthentication:
		errs = append(errs, o.validate()...)
	case *serviceMonitor:
		errs = append(errs, o.validate()...)
	case *prometheusRule:
		errs = append(errs, o.validate()...)
	}
	return errs.ToAggregate()
}

func validateMeta(om metav1.Object, kind string) field.ErrorList {
	var errs field.ErrorList
	name := field.NewPath("metadata", "name")
	check := validation.IsDNS1123Subdomain
	if kind == "Service" {
		check = validation.IsDNS1035Label
	}
	for _, msg := range check(om.GetName()) {
		errs = append(errs, field.Invalid(name, om.GetName(), msg))
	}
	errs = append(errs, metavalidation.ValidateLabels(om.GetLabels(), field.NewPath("metadata", "labels"))...)
	for k := range om.GetAnnotations() {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "annotations").Key(k), k, msg))
		}
	}
	return errs
}

func validateSelector(sel *metav1.LabelSelector, podLabels map[string]string, path *field.Path) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Required(path, "")}
	}
	errs := metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, path)
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return append(errs, field.Invalid(path, sel, err.Error()))
	}
	if !s.Matches(labels.Set(podLabels)) {
		errs = append(errs, field.Invalid(path, sel, "does not match the pod template's labels"))
	}
	return errs
}

func validateJobSpec(spec *batchv1.JobSpec, path *field.Path) field.ErrorList {
	errs := validatePodSpec(&spec.Template.Spec, path.Child("template", "spec"))
	errs = append(errs, metavalidation.ValidateLabels(spec.Template.Labels, path.Child("template", "metadata", "labels"))...)
	if rp := spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
		errs = append(errs, field.NotSupported(path.Child("template", "spec", "restartPolicy"), rp, []string{"Never", "OnFailure"}))
	}
	return errs
}

func validatePodSpec(spec *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes := map[string]bool{}
	for i, v := range spec.Volumes {
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(path.Child("volumes").Index(i).Child("name"), v.Name, msg))
		}
		if volumes[v.Name] {
			errs = append(errs, field.Duplicate(path.Child("volumes").Index(i).Child("name"), v.Name))
		}
		volumes[v.Name] = true
	}
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), ""))
	}
	for i, c := range spec.Containers {
		cp := path.Child("containers").Index(i)
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(cp.Child("name"), c.Name, msg))
		}
		if c.Image == "" {
			errs = append(errs, field.Required(cp.Child("image"), ""))
		}
		ports := map[string]bool{}
		for j, p := range c.Ports {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(cp.Child("ports").Index(j).Child("name"), p.Name, msg))
			}
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(cp.Child("ports").Index(j).Child("containerPort"), p.ContainerPort, msg))
			}
			ports[p.Name] = true
		}
		env := map[string]bool{}
		for j, e := range c.Env {
			ep := cp.Child("env").Index(j)
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
			}
			// Kubernetes accepts duplicates and the last one wins: in a chart that is always a bug.
			if env[e.Name] {
				errs = append(errs, field.Duplicate(ep.Child("name"), e.Name))
			}
			env[e.Name] = true
			if e.ValueFrom != nil && e.Value != "" {
				errs = append(errs, field.Invalid(ep, e.Name, "value and valueFrom are exclusive"))
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				for _, msg := range validation.IsConfigMapKey(ref.Key) {
					errs = append(errs, field.Invalid(ep.Child("valueFrom", "secretKeyRef", "key"), ref.Key, msg))
				}
				if ref.Name == "" {
					errs = append(errs, field.Required(ep.Child("valueFrom", "secretKeyRef", "name"), ""))
				}
			}
		}
		for j, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				errs = append(errs, field.NotFound(cp.Child("volumeMounts").Index(j).Child("name"), vm.Name))
			}
		}
		for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			if port := p.HTTPGet.Port; port.Type == intstr.String && !ports[port.StrVal] {
				errs = append(errs, field.NotFound(cp.Child(name, "httpGet", "port"), port.StrVal))
			}
		}
	}
	return errs
}

// The custom resources the chart renders, reduced to the fields it uses. Decoding rejects any
// other field, so a typo or a field from another version of the CRD fails here. The field names
// and types follow KEDA v2 (keda.sh/v1alpha1) and Prometheus Operator (monitoring.coreos.com/v1).

var customKinds = map[schema.GroupVersionKind]func() any{
	{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}:           func() any { return new(scaledObject) },
	{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}:  func() any { return new(triggerAuthentication) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return new(serviceMonitor) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return new(prometheusRule) },
}

type scaleTargetRef struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef   scaleTargetRef  `json:"scaleTargetRef"`
		MinReplicaCount  *int32          `json:"minReplicaCount,omitempty"`
		MaxReplicaCount  *int32          `json:"maxReplicaCount,omitempty"`
		PollingInterval  *int32          `json:"pollingInterval,omitempty"`
		CooldownPeriod   *int32          `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount *int32          `json:"idleReplicaCount,omitempty"`
		Advanced         json.RawMessage `json:"advanced,omitempty"`
		Triggers         []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

func (o *scaledObject) validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if o.Spec.ScaleTargetRef.Name == "" {
		errs = append(errs, field.Required(spec.Child("scaleTargetRef", "name"), ""))
	}
	if o.Spec.MinReplicaCount != nil && o.Spec.MaxReplicaCount != nil && *o.Spec.MinReplicaCount > *o.Spec.MaxReplicaCount {
		errs = append(errs, field.Invalid(spec.Child("minReplicaCount"), *o.Spec.MinReplicaCount, "above maxReplicaCount"))
	}
	if len(o.Spec.Triggers) == 0 {
		errs = append(errs, field.Required(spec.Child("triggers"), ""))
	}
	for i, tr := range o.Spec.Triggers {
		tp := spec.Child("triggers").Index(i)
		if tr.Type != "kafka" {
			errs = append(errs, field.NotSupported(tp.Child("type"), tr.Type, []string{"kafka"}))
		}
		for _, k := range []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} {
			if tr.Metadata[k] == "" {
				errs = append(errs, field.Required(tp.Child("metadata", k), ""))
			}
		}
	}
	return errs
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

func (o *triggerAuthentication) validate() field.ErrorList {
	var errs field.ErrorList
	known := []string{"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
	seen := map[string]bool{}
	for i, ref := range o.Spec.SecretTargetRef {
		p := field.NewPath("spec", "secretTargetRef").Index(i)
		if !slices.Contains(known, ref.Parameter) {
			errs = append(errs, field.NotSupported(p.Child("parameter"), ref.Parameter, known))
		}
		if seen[ref.Parameter] {
			errs = append(errs, field.Duplicate(p.Child("parameter"), ref.Parameter))
		}
		seen[ref.Parameter] = true
		if ref.Name == "" || ref.Key == "" {
			errs = append(errs, field.Required(p, "name and key"))
		}
	}
	if seen["username"] != seen["password"] {
		errs = append(errs, field.Invalid(field.NewPath("spec", "secretTargetRef"), "", "username and password go together"))
	}
	if seen["cert"] != seen["key"] {
		errs = append(errs, field.Invalid(field.NewPath("spec", "secretTargetRef"), "", "cert and key go together"))
	}
	return errs
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func (o *serviceMonitor) validate() field.ErrorList {
	var errs field.ErrorList
	if len(o.Spec.Selector.MatchLabels) == 0 {
		errs = append(errs, field.Required(field.NewPath("spec", "selector"), "an empty selector matches every Service"))
	}
	if len(o.Spec.Endpoints) == 0 {
		errs = append(errs, field.Required(field.NewPath("spec", "endpoints"), ""))
	}
	for i, ep := range o.Spec.Endpoints {
		if ep.Port == "" {
			errs = append(errs, field.Required(field.NewPath("spec", "endpoints").Index(i).Child("port"), ""))
		}
	}
	return errs
}
