package sdk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error { return permanentError{err} }

// IsTransient reports whether retrying err may succeed: the apiserver (or a webhook
// behind it) was unreachable, overloaded, timed out or failed internally, or an
// optimistic-lock conflict. Refusals (403, 422, 400, 401, 404 of a kind) are not.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var p permanentError
	if errors.As(err, &p) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if meta.IsNoMatchError(err) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		switch {
		case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
			return true
		case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err):
			return true
		case code >= 500:
			return true
		case code == 0:
			// A status without a code came from the client side; treat it like a network error.
			return true
		}
		return false
	}
	// Not an apiserver answer: connection refused or reset, TLS or DNS trouble,
	// discovery failures. The apiserver may be back in a moment.
	return true
}

// newBackoff is the retry schedule: from initial (default 200ms), doubling up to
// limit (default 10s), each delay stretched by up to 10% so that many services
// retrying after one outage spread out. Step it on a copy: each loop starts afresh.
func newBackoff(initial, limit time.Duration) wait.Backoff {
	if initial <= 0 {
		initial = 200 * time.Millisecond
	}
	if limit <= 0 {
		limit = 10 * time.Second
	}
	return wait.Backoff{Duration: initial, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: limit}
}

// retry runs fn until it succeeds, fails permanently, or ctx ends.
func (r *Registration) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	b := r.backoff
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if !IsTransient(err) {
			var p permanentError
			if errors.As(err, &p) {
				err = p.err
			}
			var owned *SlugOwnedError
			if errors.As(err, &owned) {
				return owned // its message is the whole story
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w (%w)", what, ctx.Err(), err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		d := b.Step()
		r.log.Info("transient failure; retrying", "step", what, "attempt", attempt, "in", d.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d attempts: %w (last error: %w)", what, attempt, ctx.Err(), err)
		case <-time.After(d):
		}
	}
}
