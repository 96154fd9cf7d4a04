// Package v1alpha1 contains the slugway.io/v1alpha1 API: ServiceAccount (a claimed
// slug) and Instance (a URL that serves a slug).
//
// +kubebuilder:object:generate=true
// +groupName=slugway.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the slugway API.
	GroupVersion = schema.GroupVersion{Group: "slugway.io", Version: "v1alpha1"}

	// SchemeBuilder registers the slugway types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the slugway types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the slugway kinds and their lists in GroupVersion.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ServiceAccount{}, &ServiceAccountList{}, &Instance{}, &InstanceList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
