package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FinalizerInstances is on every ServiceAccount: deleting one deletes its Instances
// first (the controller does), since leaving them behind would hand them to whoever
// claims the slug next. The admission webhook adds it and keeps users from removing it.
const FinalizerInstances = "slugway.io/instances"

// ServiceAccountSpec describes a claimed slug.
type ServiceAccountSpec struct {
	// DisplayName is a human-readable name for the service, e.g. "Skeleton Svc".
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// Owner is the Kubernetes username that owns the slug, for example
	// "system:serviceaccount:team-a:skeleton". Only the owner (or an admin)
	// may change the slug's instances. When empty at creation, the admission
	// webhook fills it with the creating user's name. Only admins may change it.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Owner string `json:"owner,omitempty"`
}

// ServiceAccountStatus aggregates the state of the slug's instances.
type ServiceAccountStatus struct {
	// Instances is the number of Instances that name this slug, in any namespace.
	// +optional
	Instances int32 `json:"instances"`

	// HealthyInstances is the number of those that are routable (Healthy or Degraded and owned).
	// +optional
	HealthyInstances int32 `json:"healthyInstances"`

	// ObservedGeneration is the generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is True when at least one instance is routable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ServiceAccount claims a slug: the proxy routes /<slug>/... to the slug's
// Instances. The object's name is the slug. It is cluster-scoped, so the
// apiserver's name uniqueness makes claims first-come, first-served.
//
// The kind shares its name with the core ServiceAccount; address it as
// "serviceaccounts.slugway.io", or by its short names "slug" and "slugs".
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={slug,slugs},categories=slugway
// +kubebuilder:printcolumn:name="Slug",type=string,JSONPath=`.metadata.name`
// +kubebuilder:printcolumn:name="Display Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Instances",type=integer,JSONPath=`.status.instances`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.healthyInstances`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="the slug (metadata.name) must be at most 63 characters"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",message="the slug (metadata.name) must be a lowercase DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
type ServiceAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ServiceAccountSpec `json:"spec,omitempty"`
	// +optional
	Status ServiceAccountStatus `json:"status,omitempty"`
}

// Slug returns the slug this ServiceAccount claims: its name.
func (s *ServiceAccount) Slug() string { return s.Name }

// +kubebuilder:object:root=true

// ServiceAccountList is a list of ServiceAccounts.
type ServiceAccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAccount `json:"items"`
}
