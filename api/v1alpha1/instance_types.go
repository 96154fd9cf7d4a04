package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HealthCheckType says how the controller decides whether an Instance is alive.
// +kubebuilder:validation:Enum=http;tcp;heartbeat
type HealthCheckType string

const (
	// HealthCheckHTTP probes spec.url joined with healthCheck.path; a 2xx or 3xx answer is healthy.
	HealthCheckHTTP HealthCheckType = "http"
	// HealthCheckTCP opens a TCP connection to the URL's host and port.
	HealthCheckTCP HealthCheckType = "tcp"
	// HealthCheckHeartbeat is push mode: the service renews status.lastHeartbeat
	// itself, and the instance turns Unreachable when that is older than the TTL.
	HealthCheckHeartbeat HealthCheckType = "heartbeat"
)

// AppProtocol is the protocol the proxy speaks to an instance.
// +kubebuilder:validation:Enum=http;h2c
type AppProtocol string

const (
	// AppProtocolHTTP is HTTP/1.1 (or HTTP/2 negotiated by TLS ALPN for https URLs).
	AppProtocolHTTP AppProtocol = "http"
	// AppProtocolH2C is HTTP/2 over cleartext with prior knowledge, as gRPC servers speak.
	AppProtocolH2C AppProtocol = "h2c"
)

// HealthCheck configures how an Instance's health is determined.
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || !has(self.timeout) || duration(self.interval) > duration(self.timeout)",message="healthCheck.interval must be greater than healthCheck.timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.degradedAfter) || !has(self.timeout) || duration(self.degradedAfter) <= duration(self.timeout)",message="healthCheck.degradedAfter must not exceed healthCheck.timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.ttl) || duration(self.ttl) >= duration('1s')",message="healthCheck.ttl must be at least 1s"
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || duration(self.timeout) > duration('0s')",message="healthCheck.timeout must be positive, for example 2s"
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || duration(self.interval) >= duration('1s')",message="healthCheck.interval must be at least 1s (at most 60 probes per instance per minute), for example 10s"
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || duration(self.interval) <= duration('1h')",message="healthCheck.interval must be at most 1h, for example 10s"
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || duration(self.timeout) <= duration('30s')",message="healthCheck.timeout must be at most 30s: a probe holds one of the controller's probe workers for up to its timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.degradedAfter) || duration(self.degradedAfter) > duration('0s')",message="healthCheck.degradedAfter must be positive, for example 1s"
type HealthCheck struct {
	// Type is http (the default), tcp or heartbeat.
	// +kubebuilder:default=http
	// +optional
	Type HealthCheckType `json:"type,omitempty"`

	// Path is requested by http checks, joined to spec.url's own path. A 2xx or 3xx status is healthy.
	// +kubebuilder:default="/healthz"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && !self.matches('[#[:space:]]')",message="healthCheck.path must start with '/' and contain no whitespace or '#', for example /healthz"
	// +optional
	Path string `json:"path,omitempty"`

	// Interval between probes: at least 1s, at most 1h.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Format=duration
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Timeout of one probe: less than interval, at most 30s.
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Format=duration
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// DegradedAfter: a probe that succeeds but takes longer than this marks the instance Degraded.
	// Unset, it is half the timeout (1s with the default 2s timeout), so it always fits a custom timeout.
	// +kubebuilder:validation:Format=duration
	// +optional
	DegradedAfter *metav1.Duration `json:"degradedAfter,omitempty"`

	// HealthyThreshold is how many consecutive successes turn an instance Healthy.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	HealthyThreshold int32 `json:"healthyThreshold,omitempty"`

	// UnhealthyThreshold is how many consecutive failures turn an instance Unreachable.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	UnhealthyThreshold int32 `json:"unhealthyThreshold,omitempty"`

	// TTL is how long a heartbeat stays valid in heartbeat mode.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Format=duration
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`
}

// Defaults of HealthCheck, as the CRD's schema applies them. The accessors below fall
// back to them for objects that did not pass through the apiserver (unit tests, fakes).
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultTTL      = 30 * time.Second

	// MinInterval, MaxInterval and MaxTimeout are the bounds the CRD's schema enforces.
	MinInterval = time.Second
	MaxInterval = time.Hour
	MaxTimeout  = 30 * time.Second
)

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// IntervalOrDefault returns the probe interval.
func (h *HealthCheck) IntervalOrDefault() time.Duration {
	return durationOr(h.Interval, DefaultInterval)
}

// TimeoutOrDefault returns the probe timeout.
func (h *HealthCheck) TimeoutOrDefault() time.Duration { return durationOr(h.Timeout, DefaultTimeout) }

// DegradedAfterOrDefault returns the latency above which a success counts as Degraded:
// degradedAfter, or half the timeout when unset.
func (h *HealthCheck) DegradedAfterOrDefault() time.Duration {
	return durationOr(h.DegradedAfter, h.TimeoutOrDefault()/2)
}

// TTLOrDefault returns the heartbeat TTL.
func (h *HealthCheck) TTLOrDefault() time.Duration { return durationOr(h.TTL, DefaultTTL) }

// InstanceSpec says which slug an instance serves and where it is reachable.
type InstanceSpec struct {
	// Slug is the ServiceAccount (slug) this instance serves. It cannot change.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",message="spec.slug must be a lowercase DNS label, the name of the slug's ServiceAccount: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.slug is immutable: delete the Instance and create a new one for another slug"
	Slug string `json:"slug"`

	// URL is where the instance is reachable: an absolute http or https URL with a host,
	// and no userinfo or fragment. Requests for /<slug>/rest are sent to URL + /<slug>/rest.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https']",message="spec.url must be an absolute http:// or https:// URL"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="spec.url must have a host"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="spec.url must not contain userinfo (user:password@): pass credentials another way"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="spec.url must not contain a fragment (#...)"
	URL string `json:"url"`

	// AppProtocol is the protocol the proxy speaks to the instance: http (default) or
	// h2c (HTTP/2 cleartext with prior knowledge, for gRPC).
	// +kubebuilder:default=http
	// +optional
	AppProtocol AppProtocol `json:"appProtocol,omitempty"`

	// HealthCheck says how the controller determines the instance's health.
	// +kubebuilder:default={}
	// +optional
	HealthCheck HealthCheck `json:"healthCheck,omitempty"`
}

// Health is an instance's health, in OpenOrch's words.
// +kubebuilder:validation:Enum=Unknown;Healthy;Degraded;Unreachable
type Health string

const (
	// HealthUnknown: not probed yet.
	HealthUnknown Health = "Unknown"
	// HealthHealthy: answering within degradedAfter.
	HealthHealthy Health = "Healthy"
	// HealthDegraded: answering, but slower than degradedAfter. Routed only when no Healthy instance exists.
	HealthDegraded Health = "Degraded"
	// HealthUnreachable: failing its checks, or its heartbeat expired. Never routed.
	HealthUnreachable Health = "Unreachable"
)

// Condition types and reasons on Instances and ServiceAccounts.
const (
	// ConditionReady is True when the instance is routable (owned and Healthy or Degraded).
	ConditionReady = "Ready"
	// ConditionOwned is True when the instance's slug is claimed and its URL is not held by another slug.
	ConditionOwned = "Owned"

	ReasonSlugClaimed         = "SlugClaimed"
	ReasonSlugNotFound        = "SlugNotFound"
	ReasonURLConflict         = "URLConflict"
	ReasonURLInvalid          = "URLInvalid"
	ReasonClaimMismatch       = "ClaimMismatch"
	ReasonProbeSucceeded      = "ProbeSucceeded"
	ReasonProbeSlow           = "ProbeSlow"
	ReasonProbeFailed         = "ProbeFailed"
	ReasonHeartbeatFresh      = "HeartbeatFresh"
	ReasonHeartbeatExpired    = "HeartbeatExpired"
	ReasonNotProbed           = "NotProbed"
	ReasonNotOwned            = "NotOwned"
	ReasonInstancesRoutable   = "InstancesRoutable"
	ReasonNoRoutableInstances = "NoRoutableInstances"
	// ReasonURLReleased: the instance lost its URL to another slug's instance while it
	// had been Unreachable for longer than the controller's --url-hold-grace.
	ReasonURLReleased = "URLReleased"
)

// InstanceStatus is written by the controller (and lastHeartbeat by the owner in heartbeat mode).
type InstanceStatus struct {
	// Status is Unknown, Healthy, Degraded or Unreachable.
	// +optional
	Status Health `json:"status,omitempty"`

	// LastHeartbeat is the time of the last successful probe or heartbeat. The
	// controller refreshes it coarsely (every 30s by default), not on every probe.
	// It is stored with one-second precision; a heartbeat-mode instance turns
	// Unreachable once lastHeartbeat + 1s + TTL has passed (up to 1s late, never early).
	// +optional
	LastHeartbeat *metav1.Time `json:"lastHeartbeat,omitempty"`

	// ObservedGeneration is the generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready and Owned.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Instance is a URL that serves a slug. The proxy routes /<slug>/... to the
// slug's Healthy instances (Degraded ones only when none is Healthy).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName={inst},categories=slugway
// +kubebuilder:printcolumn:name="ID",type=string,JSONPath=`.metadata.name`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Owner Slug",type=string,JSONPath=`.spec.slug`
// +kubebuilder:printcolumn:name="Last Heartbeat",type=date,JSONPath=`.status.lastHeartbeat`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Instance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec InstanceSpec `json:"spec"`
	// +optional
	Status InstanceStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// InstanceList is a list of Instances.
type InstanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Instance `json:"items"`
}
