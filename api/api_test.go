package api

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/pushgrid/pushgrid/session"
)

// TestInFlightBound: past maxInFlight requests at once, a request gets no
// slot (and is answered busy); a finished one frees its slot.
func TestInFlightBound(t *testing.T) {
	s := &Server{busy: make(chan struct{}, maxInFlight)}
	for i := range maxInFlight {
		if !s.acquire() {
			t.Fatalf("request %d refused below the bound", i)
		}
	}
	if s.acquire() {
		t.Fatal("a request past the bound got a slot")
	}
	s.release()
	if !s.acquire() {
		t.Fatal("a freed slot was not reused")
	}
}

// TestFirstUsersMerge: each node sends its first 1,001 users by name; the
// merge of those gives the cluster's first 1,000 exactly, each user's
// connections summed over the nodes, and says truncated.
func TestFirstUsersMerge(t *testing.T) {
	nodes := []map[string]int{{}, {}, {}}
	want := map[string]int{}
	for i := 0; i < 3000; i++ {
		u := fmt.Sprintf("user%05d", i)
		for k, n := range nodes {
			if (i+k)%2 == 0 || i%7 == 0 {
				n[u] += k + 1
				want[u] += k + 1
			}
		}
	}
	merged := map[string]int{}
	for _, n := range nodes {
		for u, c := range firstUsers(n, session.MaxPresenceUsers+1) {
			merged[u] += c
		}
	}
	got, truncated := session.PresenceList(merged)
	all, _ := session.PresenceList(want)
	if !truncated || !reflect.DeepEqual(got, all[:session.MaxPresenceUsers]) {
		t.Fatalf("merged first users differ (truncated %v): %v… want %v…", truncated, got[:3], all[:3])
	}
}
