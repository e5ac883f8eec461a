package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in log-linear buckets: 64 sub-buckets per
// power of two of microseconds, so a percentile is within about 1.6%.
type histogram struct {
	counts [64 * 40]atomic.Int64
	max    atomic.Int64
}

const subBuckets = 64

func bucketOf(us int64) int {
	if us < subBuckets {
		return int(max(us, 0))
	}
	exp := bits.Len64(uint64(us)) - 6 // us >> exp is in [32, 64)
	return exp*subBuckets/2 + int(us>>exp)
}

// lowOf is the smallest value in bucket b, the inverse of bucketOf.
func lowOf(b int) int64 {
	if b < subBuckets {
		return int64(b)
	}
	exp := (b - subBuckets/2) / (subBuckets / 2)
	mant := int64(b - exp*subBuckets/2)
	return mant << exp
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	b := bucketOf(us)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// percentiles returns the values at each quantile in ms, and the maximum.
func (h *histogram) percentiles(qs ...float64) ([]float64, float64) {
	var total int64
	snap := make([]int64, len(h.counts))
	for i := range h.counts {
		snap[i] = h.counts[i].Load()
		total += snap[i]
	}
	out := make([]float64, len(qs))
	if total == 0 {
		return out, 0
	}
	for i, q := range qs {
		rank := int64(math.Ceil(q * float64(total)))
		var seen int64
		for b, c := range snap {
			seen += c
			if seen >= rank {
				out[i] = float64(lowOf(b)) / 1000
				break
			}
		}
	}
	return out, float64(h.max.Load()) / 1000
}
