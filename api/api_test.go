package api

import "testing"

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
