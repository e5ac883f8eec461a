package sticky

import "golang.org/x/sys/unix"

// The steering program is classic BPF run by the kernel for every new
// connection to the reuseport group; its return value is the index of the
// listener that gets it. Facts of this hook, measured on Linux 6.x: packet
// data starts after the TCP header, so the IP header is read at negative
// offsets from SKF_NET_OFF; a load that fails ends the program with 0.

const (
	skfNetOff = -0x100000 // SKF_NET_OFF: offsets from the network header

	ipVersionOff = 0  // version in the high nibble of the first byte
	ipv4SrcOff   = 12 // IPv4 source address
	ipv6SrcOff   = 8  // IPv6 source address, 16 bytes

	// hashMul is Knuth's multiplicative constant (2^32 / golden ratio);
	// multiplying spreads consecutive addresses, and the high bits of the
	// product are the well-mixed ones.
	hashMul   = 0x9E3779B1
	hashShift = 16
)

// off turns a network-header offset into the operand of a BPF load.
func off(n int32) uint32 { return uint32(skfNetOff + n) }

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// steeringProgram returns the program for a group of n listeners: the
// client address folded to 32 bits, hashed, modulo n.
func steeringProgram(n int) []unix.SockFilter {
	const (
		ldB  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		tax  = unix.BPF_MISC | unix.BPF_TAX
		xorX = unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X
		rshK = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
		mulK = unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K
		modK = unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K
		jeqK = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jaK  = unix.BPF_JMP | unix.BPF_JA
		retA = unix.BPF_RET | unix.BPF_A
		retK = unix.BPF_RET | unix.BPF_K
	)
	return []unix.SockFilter{
		/* 0 */ stmt(ldB, off(ipVersionOff)), // A = first byte of the IP header
		/* 1 */ stmt(rshK, 4), // A = IP version
		/* 2 */ jump(jeqK, 4, 0, 2), // IPv4: 3, else 5
		/* 3 */ stmt(ldW, off(ipv4SrcOff)), // A = IPv4 source
		/* 4 */ jump(jaK, 12, 0, 0), // to the hash at 17
		/* 5 */ jump(jeqK, 6, 1, 0), // IPv6: 7, else 6
		/* 6 */ stmt(retK, 0), // neither: listener 0
		/* 7 */ stmt(ldW, off(ipv6SrcOff)), // A = the IPv6 source's four
		/* 8 */ stmt(tax, 0), // words XORed together
		/* 9 */ stmt(ldW, off(ipv6SrcOff+4)),
		/* 10 */ stmt(xorX, 0),
		/* 11 */ stmt(tax, 0),
		/* 12 */ stmt(ldW, off(ipv6SrcOff+8)),
		/* 13 */ stmt(xorX, 0),
		/* 14 */ stmt(tax, 0),
		/* 15 */ stmt(ldW, off(ipv6SrcOff+12)),
		/* 16 */ stmt(xorX, 0),
		/* 17 */ stmt(mulK, hashMul), // A *= hashMul (32-bit)
		/* 18 */ stmt(rshK, hashShift), // A >>= hashShift
		/* 19 */ stmt(modK, uint32(n)), // A %= n
		/* 20 */ stmt(retA, 0), // the listener's index
	}
}
