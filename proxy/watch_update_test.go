package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8stesting "k8s.io/client-go/testing"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/registry"
)

// cluster is a fake apiserver plus an informer's view of it: every write is
// handed to the watcher's event handlers with its old and new object, after the
// store holds it, as a shared informer does.
type cluster struct {
	t   *testing.T
	c   client.Client
	ev  toolscache.ResourceEventHandler
	ctx context.Context
}

func (k *cluster) get(obj client.Object) bool {
	err := k.c.Get(k.ctx, client.ObjectKeyFromObject(obj), obj)
	return err == nil
}

func (k *cluster) create(obj client.Object) {
	if err := k.c.Create(k.ctx, obj); err != nil {
		k.t.Fatal(err)
	}
	k.ev.OnAdd(obj, false)
}

func (k *cluster) update(old, obj client.Object) {
	if err := k.c.Update(k.ctx, obj); err != nil {
		k.t.Fatal(err)
	}
	k.ev.OnUpdate(old, obj)
}

// remove deletes obj; with a finalizer it is only marked (an update event), as the apiserver does.
func (k *cluster) remove(obj client.Object, tombstone bool) {
	old := obj.DeepCopyObject().(client.Object)
	if err := k.c.Delete(k.ctx, obj); err != nil {
		k.t.Fatal(err)
	}
	if k.get(obj) {
		k.ev.OnUpdate(old, obj)
		return
	}
	if tombstone { // the informer missed the delete and found out on relist
		k.ev.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "x", Obj: old})
		return
	}
	k.ev.OnDelete(old)
}

func (k *cluster) full() *routes.Table {
	var sas slugwayv1.ServiceAccountList
	var insts slugwayv1.InstanceList
	if err := k.c.List(k.ctx, &sas); err != nil {
		k.t.Fatal(err)
	}
	if err := k.c.List(k.ctx, &insts); err != nil {
		k.t.Fatal(err)
	}
	return routes.Build(sas.Items, insts.Items)
}

var slugwayMapper = func() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(slugwayv1.GroupVersion.WithKind("Instance"), meta.RESTScopeNamespace)
	m.Add(slugwayv1.GroupVersion.WithKind("ServiceAccount"), meta.RESTScopeRoot)
	return m
}()

// indexedClient is a fake apiserver that, like the proxy's cache, lists Instances by spec.slug.
func indexedClient() client.Client {
	// A plain tracker: the default one, managing fields, builds a REST mapper per write.
	tracker := k8stesting.NewObjectTracker(kubeclient.Scheme(), serializer.NewCodecFactory(kubeclient.Scheme()).UniversalDecoder())
	return fake.NewClientBuilder().WithScheme(kubeclient.Scheme()).WithRESTMapper(slugwayMapper).WithObjectTracker(tracker).
		WithIndex(&slugwayv1.Instance{}, registry.IndexSlug, registry.IndexInstanceSlug).Build()
}

var (
	wSlugs  = []string{"a", "b", "c", "ghost"} // ghost never gets a ServiceAccount
	wHealth = []slugwayv1.Health{slugwayv1.HealthHealthy, slugwayv1.HealthDegraded, slugwayv1.HealthUnknown, slugwayv1.HealthUnreachable}
	wURLs   = []string{"http://10.0.0.1", "http://10.0.0.2:8080/p", "http://10.0.0.3", "ftp://nope"}
)

func newInstance(r *rand.Rand, name string) *slugwayv1.Instance {
	in := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: []string{"ns1", "ns2"}[r.IntN(2)]},
		Spec:       slugwayv1.InstanceSpec{Slug: wSlugs[r.IntN(len(wSlugs))], URL: wURLs[r.IntN(len(wURLs))]},
		Status: slugwayv1.InstanceStatus{Status: wHealth[r.IntN(len(wHealth))], Conditions: []metav1.Condition{{
			Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, LastTransitionTime: metav1.Now(),
		}}},
	}
	if r.IntN(3) == 0 {
		in.Finalizers = []string{"test/hold"}
	}
	return in
}

// step makes one random change to the cluster, through the event handlers.
func (k *cluster) step(r *rand.Rand) string {
	if r.IntN(5) == 0 {
		slug := wSlugs[r.IntN(len(wSlugs)-1)]
		sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}}
		switch {
		case !k.get(sa):
			if r.IntN(2) == 0 {
				sa.Finalizers = []string{"test/hold"}
			}
			k.create(sa)
			return "create ServiceAccount " + slug
		case sa.DeletionTimestamp != nil:
			old := sa.DeepCopy()
			sa.Finalizers = nil
			if err := k.c.Update(k.ctx, sa); err != nil {
				k.t.Fatal(err)
			}
			k.ev.OnDelete(old)
			return "finalize ServiceAccount " + slug
		default:
			k.remove(sa, r.IntN(4) == 0)
			return "delete ServiceAccount " + slug
		}
	}
	in := &slugwayv1.Instance{}
	name := fmt.Sprintf("i%d", r.IntN(10))
	var found bool
	for _, ns := range []string{"ns1", "ns2"} {
		in.Namespace, in.Name = ns, name
		if found = k.get(in); found {
			break
		}
	}
	if !found {
		in = newInstance(r, name)
		k.create(in)
		return "create " + in.Namespace + "/" + name + " in " + in.Spec.Slug
	}
	old := in.DeepCopy()
	what := in.Namespace + "/" + name
	switch r.IntN(8) {
	case 0:
		if in.DeletionTimestamp != nil {
			in.Finalizers = nil
			if err := k.c.Update(k.ctx, in); err != nil {
				k.t.Fatal(err)
			}
			k.ev.OnDelete(old)
			return "finalize " + what
		}
		k.remove(in, r.IntN(4) == 0)
		return "delete " + what
	case 1:
		in.Spec.Slug = wSlugs[r.IntN(len(wSlugs))]
		what = "move " + what + " to " + in.Spec.Slug
	case 2:
		in.Spec.URL = wURLs[r.IntN(len(wURLs))]
		what = "URL of " + what
	case 3:
		in.Status.Conditions[0].Status = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse}[r.IntN(2)]
		what = "ownership of " + what
	case 4:
		now := metav1.Now()
		in.Status.LastHeartbeat = &now // filtered out: routes do not change
		what = "heartbeat of " + what
	default:
		in.Status.Status = wHealth[r.IntN(len(wHealth))]
		what = what + " now " + string(in.Status.Status)
	}
	k.update(old, in)
	return what
}

// TestWatcherUpdatesEqualFullBuild drives the watcher's real event handlers and
// update with random changes (health transitions, instances moving between slugs,
// deleted, ServiceAccounts deleted and recreated, tombstones, unknown objects),
// read through a client with the spec.slug index, and checks after every
// coalesced batch that the published table, and the handler's live routes, equal a
// full Build of the same objects.
func TestWatcherUpdatesEqualFullBuild(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		c := indexedClient()
		h := NewHandler(Options{})
		var published *routes.Table
		w := newWatcherOn(c, h, Options{OnTableSwap: func(t *routes.Table) { published = t }})
		k := &cluster{t: t, c: c, ev: w.events(), ctx: context.Background()}
		for range r.IntN(10) {
			k.step(r)
		}
		if err := w.update(k.ctx); err != nil {
			t.Fatal(err)
		}
		var log []string
		for range 30 {
			for range 1 + r.IntN(3) {
				log = append(log, k.step(r))
			}
			if r.IntN(15) == 0 {
				w.touch("something the watcher cannot place")
				log = append(log, "unplaceable event")
			}
			if err := w.update(k.ctx); err != nil {
				t.Fatal(err)
			}
			want := k.full()
			if !reflect.DeepEqual(published, want) {
				t.Fatalf("seed %d: after %v\npublished %v\nfull Build %v", seed, log, published.Routes, want.Routes)
			}
			live := h.table.Load()
			if live.from != published || len(live.routes) != len(want.Routes) {
				t.Fatalf("seed %d: the handler does not serve the published table", seed)
			}
			for slug, rt := range want.Routes {
				if lr := live.routes[slug]; lr == nil || len(lr.backends) != len(rt.Endpoints) || lr.deleting != rt.Deleting {
					t.Fatalf("seed %d: slug %q: live route %+v, want %+v", seed, slug, lr, rt)
				}
			}
		}
	}
}

// TestWatcherRebuildsOnlyDirtySlugs: a health change of one instance publishes a
// table in which only its slug's Route is new.
func TestWatcherRebuildsOnlyDirtySlugs(t *testing.T) {
	c := indexedClient()
	var published *routes.Table
	w := newWatcherOn(c, NewHandler(Options{}), Options{OnTableSwap: func(t *routes.Table) { published = t }})
	k := &cluster{t: t, c: c, ev: w.events(), ctx: context.Background()}
	r := rand.New(rand.NewPCG(1, 1))
	for _, slug := range []string{"a", "b", "c"} {
		k.create(&slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}})
		in := newInstance(r, "i-"+slug)
		in.Spec.Slug, in.Spec.URL, in.Status.Status = slug, "http://10.0.0.1", slugwayv1.HealthHealthy
		k.create(in)
	}
	if err := w.update(k.ctx); err != nil {
		t.Fatal(err)
	}
	before := published
	if n := len(before.Lookup("b").Endpoints); n != 1 {
		t.Fatalf("b routes %d endpoints, want 1", n)
	}
	in := &slugwayv1.Instance{}
	in.Namespace, in.Name = "", "i-b"
	for _, ns := range []string{"ns1", "ns2"} {
		if in.Namespace = ns; k.get(in) {
			break
		}
	}
	old := in.DeepCopy()
	in.Status.Status = slugwayv1.HealthUnreachable
	k.update(old, in)
	if err := w.update(k.ctx); err != nil {
		t.Fatal(err)
	}
	if published == before || len(published.Lookup("b").Endpoints) != 0 {
		t.Fatal("the health change was not published")
	}
	if published.Routes["a"] != before.Routes["a"] || published.Routes["c"] != before.Routes["c"] {
		t.Fatal("slugs the change did not touch were rebuilt")
	}
	after := published
	if err := w.update(k.ctx); err != nil || published != after {
		t.Fatal("an update with no change published a table", err)
	}
}
