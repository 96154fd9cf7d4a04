// Package v1alpha1 contains the slugway.io/v1alpha1 API: ServiceAccount (a claimed
// slug) and Instance (a URL that serves a slug).
//
// +kubebuilder:object:generate=true
// +groupName=slugway.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the slugway API.
	GroupVersion = schema.GroupVersion{Group: "slugway.io", Version: "v1alpha1"}

	// SchemeBuilder registers the slugway types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the slugway types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
