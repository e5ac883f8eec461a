package bench

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for us := int64(0); us < 10_000_000; us += 1 + us/100 {
		b := bucketOf(us)
		if b < prev {
			t.Fatalf("bucket of %d went down", us)
		}
		prev = b
		low := lowOf(b)
		if low > us || float64(us-low) > 0.032*float64(us)+1 {
			t.Fatalf("%dus in bucket %d starting at %d", us, b, low)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	ps, maxMS := h.percentiles(0.5, 0.99)
	if ps[0] < 485 || ps[0] > 500 || ps[1] < 960 || ps[1] > 990 || maxMS != 1000 {
		t.Fatalf("p50 %v p99 %v max %v", ps[0], ps[1], maxMS)
	}
}
