package sticky

// Owner names the node that owns key among nodes by rendezvous (highest
// random weight) hashing: every caller with the same list agrees, and
// removing a node moves only the keys it owned. It returns "" for no nodes.
func Owner(key string, nodes []string) string {
	best, bestWeight := "", uint64(0)
	for _, n := range nodes {
		if w := weight(n, key); best == "" || w > bestWeight || (w == bestWeight && n < best) {
			best, bestWeight = n, w
		}
	}
	return best
}

// weight is FNV-1a over node, a separator and key, finished with the
// splitmix64 mixer so that similar inputs give unrelated weights. It is
// fixed, unlike hash/maphash, so every process computes the same.
func weight(node, key string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	h = (h ^ 0xff) * prime
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
