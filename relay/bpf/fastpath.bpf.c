// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * mcrd's kernel fast path: a TC ingress classifier that forwards the UDP datagrams of rules
 * mcrd put into `mcr_fp_rules` without waking userspace. mcrd attaches it with a tcx link
 * (Linux >= 6.6) or, where tcx is missing, as a direct-action filter on a clsact qdisc
 * (relay/src/fastpath/clsact.rs); the same program serves both (see the entry points).
 *
 * Per packet: parse Ethernet (one 802.1Q/802.1ad tag in band, or a tag in skb metadata),
 * IPv4 without options and not a fragment, UDP; look up (ifindex, group, port, any), and
 * (ifindex, group, port, source) only for flows that have source-specific rules. For each output of the rule, rewrite the headers in
 * place (MACs, IP source/destination/TTL, UDP ports; checksums updated incrementally) and
 * send: every output but the last as a clone (bpf_clone_redirect), the last as the original
 * (bpf_redirect), so a 1:1 rule never copies the packet.
 *
 * What the program does not forward it leaves to the stack (and to mcrd's userspace path):
 * TCX_NEXT for traffic no rule wants (other tcx programs behind us still run), and also
 * for IPv4 with options and fragments, which are counted in mcr_fp_pass.
 *
 * A frame of one of its flows that the userspace parser (relay/src/wire/frame.rs) would
 * refuse, the program refuses too, with the same checks in the same order, and counts in
 * mcr_fp_pass under the same kind (the packet sockets' filter excludes the program's flows,
 * so userspace never sees these frames): a second VLAN tag, IP version, header checksum, IP
 * total length, UDP length, UDP checksum. So `sent` means handed to an output, and a
 * malformed datagram is counted the same on both paths (issue 19, item 2).
 *
 * GSO/GRO super-frames (gso_segs > 1) are forwarded whole: the output device (or the stack
 * before it) segments them with the rewritten headers; they count gso_segs datagrams.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

/* "Not mine": tcx runs the next program (TCX_NEXT in kernels >= 6.6 headers; Debian 12's
 * lack it), the legacy clsact hook the next filter. TC_ACT_OK would end tcx's chain.
 *
 * The verdicts mean the same on both hooks, by value: TCX_NEXT/TC_ACT_UNSPEC (-1),
 * TCX_DROP/TC_ACT_SHOT (2), TCX_REDIRECT/TC_ACT_REDIRECT (7). A direct-action cls_bpf filter
 * returning TC_ACT_UNSPEC lets the next filter run (cls_bpf_classify goes on to its next
 * program, tcf_classify to the next priority), and after the last one the ingress hook
 * passes the frame to the stack (sch_handle_ingress's default case), as TCX_NEXT does at
 * the end of a tcx chain. */
#define MCR_TCX_NEXT TC_ACT_UNSPEC

#define ETH_HLEN_ 14
#define VLAN_HLEN_ 4
#define IP_DF_MF_OFFSET_MASK 0x3fff /* MF flag and fragment offset */

/* Offsets of the fields rewritten per output, in a frame without VLAN tag (the program
 * removes tags before it rewrites anything). */
#define L3_OFF ETH_HLEN_
#define L4_OFF (L3_OFF + sizeof(struct iphdr))
#define UDP_CSUM_OFF (L4_OFF + offsetof(struct udphdr, check))
/* Ethernet, IPv4 without options, UDP: the headers the program reads and rewrites. */
#define HDRS_LEN (L4_OFF + sizeof(struct udphdr))
/* The same for IPv6 without extension headers. */
#define L4_OFF6 (L3_OFF + sizeof(struct ipv6hdr))
#define UDP_CSUM_OFF6 (L4_OFF6 + offsetof(struct udphdr, check))
#define HDRS6_LEN (L4_OFF6 + sizeof(struct udphdr))

/* IPv6 extension headers (RFC 8200, 4.1), which the program leaves to userspace. */
#define NEXTHDR_HOP_ 0
#define NEXTHDR_ROUTING_ 43
#define NEXTHDR_FRAGMENT_ 44
#define NEXTHDR_DEST_ 60

/* bpf_l4_csum_replace's flag for IPv6 (Linux 6.16): under CHECKSUM_COMPLETE, a pseudo-header
 * change leaves skb->csum as it is (the address is inside the summed bytes, unlike IPv4's,
 * whose header checksum cancels it out). Older kernels refuse the flag (EINVAL); see
 * rewrite6. Defined here: Debian 12's headers predate it. */
#define MCR_BPF_F_IPV6 (1ULL << 7)

/* Rule value = whole output set. BPF_F_NO_PREALLOC: a replaced element is freed only after
 * an RCU grace period, so a packet that looked up the old set keeps reading the old set to
 * the end; with preallocated elements the old one can be reused for another update while a
 * packet still reads it (a mix of output sets). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MCR_FP_MAX_RULES);
	__type(key, struct mcr_fp_key);
	__type(value, struct mcr_fp_rule);
} mcr_fp_rules SEC(".maps");

/* The IPv6 rules, as mcr_fp_rules (and sized with it by mcrd). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MCR_FP_MAX_RULES);
	__type(key, struct mcr_fp_key6);
	__type(value, struct mcr_fp_rule6);
} mcr_fp_rules6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MCR_FP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct mcr_fp_rule_counters);
} mcr_fp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mcr_fp_pass_counters);
} mcr_fp_pass SEC(".maps");

/* Indexed by counter slot; only monitored rules' entries are touched. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MCR_FP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct mcr_fp_monitor);
} mcr_fp_monitors SEC(".maps");

/* What parsing found out about a frame. */
struct parsed {
	__u32 l3_off;     /* 14, or 18 with a tag in band */
	__u32 l4_off;     /* l3_off + the IP header's length */
	__u32 saddr;      /* IPv4: network order */
	__u32 daddr;      /* IPv4: network order */
	__u32 saddr6[4];  /* IPv6: network order */
	__u32 daddr6[4];  /* IPv6: network order */
	__u32 head6[2];   /* IPv6: the fixed header's first 8 bytes, as in the frame */
	__u16 dport;      /* network order */
	__u16 ip_len;     /* IPv4 total length, IPv6 payload length; host order */
	__u16 udp_len;    /* UDP length, host order */
	__u16 udp_check;  /* UDP checksum, as in the frame */
	__u8 ipv6;        /* 1 for an IPv6 frame (EtherType), 0 for IPv4 */
	__u8 tag_in_band; /* 1 if an 802.1Q/802.1ad tag sits in the frame */
	__u8 pass;        /* PASS_* */
	__u8 version;     /* IP version (checked in check(), as userspace does) */
	__u8 ip_csum_ok;  /* 1 if the IPv4 header checksum verifies */
	__u8 ttl;         /* IPv4 TTL or IPv6 hop limit, as received */
};

/* PASS_BAD_IHL: an IHL below 5, which the packet filter leaves to userspace (it excludes
 * only IHL 5), where it is malformed.bad_ip_header_length; not counted here. */
enum {
	PASS_NONE = 0,
	PASS_OPTIONS = 1,
	PASS_FRAGMENT = 2,
	PASS_BAD_IHL = 3,
	PASS_EXTENSION_HEADERS = 4,
};

/* The headers parse() reads, as they sit in the frame from the IPv4 header on. */
struct l3l4 {
	struct iphdr ip;
	struct udphdr udp; /* if the IPv4 header has no options */
};

/* The same for IPv6. */
struct l3l4_6 {
	struct ipv6hdr ip;
	struct udphdr udp; /* if the next header is UDP */
};

/* Folds a one's-complement sum to 16 bits. */
static __always_inline __u16 csum_fold_(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Whether a 20-byte IPv4 header's checksum verifies: 10 words summed in place (the header
 * is on the stack already; cheaper than a helper call). */
static __always_inline __u8 ip_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 s = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	return csum_fold_(s) == 0xffff;
}

/* Fills `p` from the IPv4 and UDP headers `h`, which sit in the packet (an untagged frame, read
 * in place) or in a copy on the stack (a tagged one). Returns 0, or -1 if it is not UDP. */
static __always_inline int parse_l3l4(struct parsed *p, const struct l3l4 *h)
{
	const struct iphdr *ip = &h->ip;
	const struct udphdr *udp = &h->udp;

	/* What the packet filter tests (IHL, protocol, fragment), not the version: a frame it
	 * excludes must be counted here, so the version is checked once the frame is known to
	 * be one of ours (check()). */
	if (ip->protocol != IPPROTO_UDP)
		return -1;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->l4_off = p->l3_off + sizeof(struct iphdr);
	p->dport = udp->dest;
	p->ip_len = bpf_ntohs(ip->tot_len);
	p->udp_len = bpf_ntohs(udp->len);
	p->udp_check = udp->check;
	p->version = ip->version;
	p->ttl = ip->ttl;
	p->pass = PASS_NONE;
	if (ip->ihl != 5)
		p->pass = ip->ihl > 5 ? PASS_OPTIONS : PASS_BAD_IHL;
	else if (ip->frag_off & bpf_htons(IP_DF_MF_OFFSET_MASK))
		p->pass = PASS_FRAGMENT;
	else
		p->ip_csum_ok = ip_csum_ok(ip);
	return 0;
}

/* Whether IPv6 next header `h` is an extension header userspace walks (wire/ipv6.rs). */
static __always_inline int is_extension_header(__u8 h)
{
	return h == NEXTHDR_HOP_ || h == NEXTHDR_ROUTING_ || h == NEXTHDR_FRAGMENT_ ||
	       h == NEXTHDR_DEST_;
}

/* parse_l3l4 for IPv6: fills `p` from the IPv6 and UDP headers `h`. Returns 0, or -1 if the
 * next header is neither UDP nor an extension header (PASS_EXTENSION_HEADERS: the frame is
 * left to userspace, which walks the chain). The version is checked in check(), as for
 * IPv4. */
static __always_inline int parse_l3l4_6(struct parsed *p, const struct l3l4_6 *h)
{
	const struct ipv6hdr *ip = &h->ip;
	const struct udphdr *udp = &h->udp;

	p->ipv6 = 1;
	p->pass = PASS_NONE;
	if (ip->nexthdr != IPPROTO_UDP) {
		if (!is_extension_header(ip->nexthdr))
			return -1;
		p->pass = PASS_EXTENSION_HEADERS;
		return 0;
	}
	__builtin_memcpy(p->head6, ip, sizeof(p->head6));
	__builtin_memcpy(p->saddr6, &ip->saddr, sizeof(p->saddr6));
	__builtin_memcpy(p->daddr6, &ip->daddr, sizeof(p->daddr6));
	p->l4_off = p->l3_off + sizeof(struct ipv6hdr);
	p->dport = udp->dest;
	p->ip_len = bpf_ntohs(ip->payload_len);
	p->udp_len = bpf_ntohs(udp->len);
	p->udp_check = udp->check;
	p->version = ip->version;
	p->ttl = ip->hop_limit;
	return 0;
}

/* The headers of a frame with an 802.1Q/802.1ad tag in band, copied to the stack.
 *
 * Verifier: a tagged frame's IPv4 header sits 4 bytes further, and reading both layouts in
 * place through one packet pointer would make its offset a variable, which programs loaded
 * without CAP_PERFMON may not add to a packet pointer ("pointer arithmetic prohibited for
 * !root"; mcrd runs with CAP_BPF and CAP_NET_ADMIN only). Tags are rare at tc ingress (the
 * stack moves the outer tag into skb metadata before it, so only the inner tag of QinQ and
 * frames injected below that step stay in band), so they take a copy instead.
 *
 * Verifier: not inlined, so that the copy sits in a stack frame of its own, not in the entry
 * point's: the deepest call chain (entry point, checksum walk, its 256-byte chunk) may use
 * 512 bytes in all, and with the copy and the IPv6 key inlined it used 560. */
static __attribute__((noinline)) int parse_tagged(struct __sk_buff *skb, struct parsed *p)
{
	__be16 proto;
	union {
		struct l3l4 v4;
		struct l3l4_6 v6;
	} h;

	if (bpf_skb_load_bytes(skb, ETH_HLEN_ + 2, &proto, 2))
		return -1;
	p->l3_off = ETH_HLEN_ + VLAN_HLEN_;
	p->tag_in_band = 1;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN_ + VLAN_HLEN_, &h.v4, sizeof(h.v4)))
			return -1;
		return parse_l3l4(p, &h.v4);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN_ + VLAN_HLEN_, &h.v6, sizeof(h.v6)))
			return -1;
		return parse_l3l4_6(p, &h.v6);
	}
	return -1;
}

/* An untagged IPv6 frame's headers, read in place as parse() reads IPv4's; a frame too short
 * for them is not one of the program's (the packet filter leaves it to userspace). */
static __always_inline int parse_untagged6(struct __sk_buff *skb, struct parsed *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (data + HDRS6_LEN > end) {
		if (skb->len < HDRS6_LEN || bpf_skb_pull_data(skb, HDRS6_LEN))
			return -1;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + HDRS6_LEN > end)
			return -1;
	}
	return parse_l3l4_6(p, data + ETH_HLEN_);
}

/* Parses Ethernet/[VLAN]/IPv4 or IPv6/UDP. Returns 0 for a candidate (or one to pass, see
 * p->pass), -1 for anything that is not IPv4/UDP or IPv6/UDP or is too short.
 *
 * An untagged frame's headers are read in place (direct packet access): copying them with
 * bpf_skb_load_bytes cost a helper call and a copy per packet. They are always in the
 * linear head for frames a socket or a driver built; a frame whose head is shorter has them
 * pulled in once. */
static __always_inline int parse(struct __sk_buff *skb, struct parsed *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	/* A frame too short for the IPv4 and UDP headers is never one of the program's: the
	 * packet filter leaves it to userspace (relay/src/rules/bpf.rs), which counts it. */
	if (data + HDRS_LEN > end) {
		if (skb->len < HDRS_LEN || bpf_skb_pull_data(skb, HDRS_LEN))
			return -1;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + HDRS_LEN > end)
			return -1;
	}
	__be16 proto = ((struct ethhdr *)data)->h_proto;
	p->l3_off = ETH_HLEN_;
	p->tag_in_band = 0;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_l3l4(p, data + ETH_HLEN_);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_untagged6(skb, p);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return parse_tagged(skb, p);
	return -1;
}

/* Counts a frame of one of the program's flows that it refuses, under `kind`
 * (MCR_FP_MALFORMED_* or MCR_FP_FILTERED_NOT_IPV4).
 *
 * Verifier: every field is added to, by 0 or 1, instead of the one indexed by `kind`: an
 * index into the array is a store through a computed address, which programs loaded without
 * CAP_PERFMON may not do (see count_pass). Only refused frames pay for it. */
static __always_inline void count_refused(int kind)
{
	__u32 zero = 0;
	struct mcr_fp_pass_counters *c = bpf_map_lookup_elem(&mcr_fp_pass, &zero);

	if (!c)
		return;
#pragma unroll
	for (int i = 0; i < MCR_FP_MALFORMED_KINDS; i++)
		c->malformed[i] += kind == i;
	c->not_ipv4 += kind == MCR_FP_FILTERED_NOT_IPV4;
}

/* The one's-complement sum of the UDP pseudo-header (addresses in network order, as in the
 * frame; the sum is taken in memory order like the data's, so byte order cancels out). */
static __always_inline __u64 pseudo_sum(const struct parsed *p)
{
	__u64 s = bpf_htons(IPPROTO_UDP) + bpf_htons(p->udp_len);

	if (!p->ipv6)
		return s + (p->saddr & 0xffff) + (p->saddr >> 16) + (p->daddr & 0xffff) +
		       (p->daddr >> 16);
	/* IPv6 (RFC 8200, 8.1): the 32-bit length's high half is 0 for a UDP length field. */
#pragma unroll
	for (int i = 0; i < 4; i++)
		s += (p->saddr6[i] & 0xffff) + (p->saddr6[i] >> 16) + (p->daddr6[i] & 0xffff) +
		     (p->daddr6[i] >> 16);
	return s;
}

#define CSUM_CHUNK 256

/* The walk over a datagram's bytes for its checksum. */
struct csum_walk {
	struct __sk_buff *skb;
	__u32 off;  /* the next byte to sum */
	__u32 left; /* bytes from `off` to the end of the datagram */
	__u32 sum;  /* bpf_csum_diff's running sum */
	__u32 err;
};

/* bpf_loop's callback: adds the next chunk of up to CSUM_CHUNK bytes; 1 ends the loop.
 *
 * Verifier: bpf_csum_diff sums whole 32-bit words, so the last chunk is read into a zeroed
 * buffer and summed rounded up to 4 bytes (zeros add nothing); both sizes are bounded
 * explicitly for the verifier. */
static long csum_next(__u32 i, void *ctx)
{
	struct csum_walk *w = ctx;
	__u8 buf[CSUM_CHUNK];
	__u32 len = w->left < CSUM_CHUNK ? w->left : CSUM_CHUNK;

	if (len == 0 || len > CSUM_CHUNK)
		return 1;
	if (len < CSUM_CHUNK)
		__builtin_memset(buf, 0, sizeof(buf));
	if (bpf_skb_load_bytes(w->skb, w->off, buf, len)) {
		w->err = 1;
		return 1;
	}
	__u32 words = (len + 3) & ~3u;
	if (words > CSUM_CHUNK)
		return 1;
	__s64 s = bpf_csum_diff(0, 0, (__be32 *)buf, words, w->sum);
	if (s < 0) {
		w->err = 1;
		return 1;
	}
	w->sum = (__u32)s;
	w->off += len;
	w->left -= len;
	return w->left ? 0 : 1;
}

/*
 * Whether the UDP checksum of the `udp_len`-byte datagram at `l4_off` verifies; `pseudo` is
 * its pseudo-header's sum (pseudo_sum()). Returns 1 if it does.
 *
 * Verifier: a global (not inlined) function, so the walk's state, which holds the context
 * pointer, lives in a stack frame of its own. Inlined, clang reused that pointer's stack slot
 * for another variable afterwards, a partial overwrite of a spilled pointer, which programs
 * loaded without CAP_PERFMON may not do ("attempt to corrupt spilled pointer on stack").
 */
__attribute__((noinline)) int mcr_fp_udp_csum_ok(struct __sk_buff *skb, __u32 l4_off,
						 __u32 udp_len, __u32 pseudo)
{
	struct csum_walk w = { .skb = skb, .off = l4_off, .left = udp_len };

	bpf_loop((udp_len + CSUM_CHUNK - 1) / CSUM_CHUNK, csum_next, &w, 0);
	if (w.err || w.left)
		return 0;
	return csum_fold_((__u64)w.sum + pseudo) == 0xffff;
}

/* Whole chunks in the longest UDP datagram (a UDP length is at most 65,535 bytes). */
#define CSUM_MAX_CHUNKS (0xffff / CSUM_CHUNK)

/*
 * mcr_fp_udp_csum_ok for kernels without bpf_loop (Linux < 5.17): the same sum, with a
 * bounded loop over the whole chunks and the rest after it.
 *
 * Verifier: a bounded loop (Linux >= 5.3) is verified once per iteration, up to
 * CSUM_MAX_CHUNKS times, so each iteration is kept to one fixed-size load and one sum, with
 * no branch on the chunk's length: with csum_next as its body (a variable length, a zeroed
 * buffer) the program was refused without CAP_PERFMON (E2BIG: over a million instructions,
 * the verifier also walking each iteration's branches as speculative execution could). The
 * rest is summed with the same buffer, in this frame: a call to csum_next would add its
 * 256-byte frame to this one, over the 512 bytes a call chain may use.
 */
__attribute__((noinline)) int mcr_fp_udp_csum_ok_bounded(struct __sk_buff *skb, __u32 l4_off,
							 __u32 udp_len, __u32 pseudo)
{
	__u8 buf[CSUM_CHUNK];
	__u32 off = l4_off, left = udp_len, sum = 0;
	__s64 s;

	for (__u32 i = 0; i < CSUM_MAX_CHUNKS; i++) {
		if (left < CSUM_CHUNK)
			break;
		if (bpf_skb_load_bytes(skb, off, buf, CSUM_CHUNK))
			return 0;
		s = bpf_csum_diff(0, 0, (__be32 *)buf, CSUM_CHUNK, sum);
		if (s < 0)
			return 0;
		sum = (__u32)s;
		off += CSUM_CHUNK;
		left -= CSUM_CHUNK;
	}
	/* The rest, summed rounded up to whole 32-bit words of a zeroed buffer as csum_next
	 * does. Verifier: both sizes bounded explicitly. The mask keeps what the loop left (less
	 * than a chunk) and gives the verifier its bounds; clang, which knows it changes
	 * nothing, dropped it ("R4 min value is negative") until barrier_var hid that from it. */
	if (left >= CSUM_CHUNK)
		return 0;
	__u32 rest = left;
	barrier_var(rest);
	rest &= CSUM_CHUNK - 1;
	if (rest) {
		__builtin_memset(buf, 0, sizeof(buf));
		if (bpf_skb_load_bytes(skb, off, buf, rest))
			return 0;
		__u32 words = (rest + 3) & ~3u;
		if (words > CSUM_CHUNK)
			return 0;
		s = bpf_csum_diff(0, 0, (__be32 *)buf, words, sum);
		if (s < 0)
			return 0;
		sum = (__u32)s;
	}
	return csum_fold_((__u64)sum + pseudo) == 0xffff;
}

/* Whether the datagram's UDP checksum verifies, summed in software with the walk the entry
 * point's kernel has (`loop`: bpf_loop, a constant; see the entry points). */
static __always_inline int udp_csum_summed_ok(struct __sk_buff *skb, const struct parsed *p,
					      const int loop)
{
	if (loop)
		return mcr_fp_udp_csum_ok(skb, p->l4_off, p->udp_len, (__u32)pseudo_sum(p));
	return mcr_fp_udp_csum_ok_bounded(skb, p->l4_off, p->udp_len, (__u32)pseudo_sum(p));
}

/*
 * The UDP checksum under CHECKSUM_COMPLETE: 1 if it verifies, 0 if it does not, -1 if the
 * frame is not CHECKSUM_COMPLETE or this shortcut does not apply.
 *
 * CHECKSUM_COMPLETE: the device, or the stack itself (which converts a checksum it verified
 * in software, such as a tunnel's outer UDP checksum before decapsulation), summed the packet
 * from the IPv4 header to its end into skb->csum. __sk_buff does not show that field (and the
 * kernel's sk_buff needs CAP_PERFMON), but bpf_csum_update returns it: adding 0 leaves it as
 * it is, and it returns an error for any other ip_summed.
 *
 * Why it is safe: the IPv4 header's own sum is 0 in one's complement (its checksum verified,
 * in check()), so when the frame ends with the datagram, skb->csum is the datagram's sum, and
 * the datagram verifies exactly when that plus the pseudo-header folds to 0xffff, the test
 * the stack makes itself (__skb_checksum_complete). A wrong checksum gives a wrong sum and
 * is refused as before. Not used for a frame with bytes after the datagram (Ethernet padding:
 * short datagrams, cheap to sum in software) or with a tag in band (the sum would include it).
 *
 * IPv6 has no header checksum, so skb->csum is the header's sum plus the datagram's; the
 * header's is taken off (added as its one's complement). Its addresses are also the
 * pseudo-header's, so they cancel out and only the first 8 bytes (version to hop limit) are
 * taken off, and only the length and next header of the pseudo-header added:
 * datagram + pseudo = csum - (head + addresses) + (addresses + length + UDP).
 */
static __always_inline int udp_csum_complete(struct __sk_buff *skb, const struct parsed *p)
{
	__u32 ip_total = p->ipv6 ? sizeof(struct ipv6hdr) + p->ip_len : p->ip_len;

	if (p->tag_in_band || skb->len - p->l3_off != ip_total)
		return -1;
	long csum = bpf_csum_update(skb, 0);
	if (csum < 0)
		return -1;
	if (!p->ipv6)
		return csum_fold_((__u64)(__u32)csum + pseudo_sum(p)) == 0xffff;
	__u64 head = (p->head6[0] & 0xffff) + (p->head6[0] >> 16) + (p->head6[1] & 0xffff) +
		     (p->head6[1] >> 16);
	__u64 s = (__u64)(__u32)csum + (__u16)~csum_fold_(head) + bpf_htons(IPPROTO_UDP) +
		  bpf_htons(p->udp_len);
	return csum_fold_(s) == 0xffff;
}

/*
 * Whether the UDP checksum verifies, as on the userspace path (which verifies only what
 * neither tp_status nor the vnet header vouches for). The datagram is summed in software
 * (udp_csum_summed_ok, a few hundred ns for 1400 bytes) only when the kernel vouches for
 * nothing, in this order (the cheapest tests first, for the usual local and offloaded cases):
 * - no checksum sent (0);
 * - CHECKSUM_UNNECESSARY: the device verified it (bpf_csum_level reports it);
 * - CHECKSUM_PARTIAL: not computed yet (a sender on this host, over veth, whose checksum the
 *   transmitting device completes). __sk_buff does not show it either, so it is recognised
 *   by its value: such a field holds the pseudo-header sum alone (udp4_hwcsum). A corrupt
 *   checksum of another frame equal to that by chance (1 in 65,536) is forwarded, and
 *   dropped by the receiver as on any path that trusts offloads. (Tested before
 *   CHECKSUM_COMPLETE: the helper call that test needs cost local senders' frames 27 ns.)
 * - CHECKSUM_COMPLETE: the device's sum decides, exactly (udp_csum_complete).
 * IPv6's zero checksum is refused before this (check6).
 */
static __always_inline int udp_csum_ok(struct __sk_buff *skb, const struct parsed *p,
				       const int loop)
{
	if (p->udp_check == 0)
		return 1;
	if (bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) >= 0)
		return 1;
	if (p->udp_check == csum_fold_(pseudo_sum(p)))
		return 1;
	int complete = udp_csum_complete(skb, p);
	if (complete >= 0)
		return complete;
	return udp_csum_summed_ok(skb, p, loop);
}

/*
 * The userspace parser's checks of a frame of one of the program's flows, in its order
 * (relay/src/wire/frame.rs): MCR_FP_VERDICT_OK, or the kind it is refused as. IHL, protocol
 * and fragments parse() has checked.
 *
 * GSO/GRO super-frames: lengths are those of the whole super-packet (as userspace reads
 * them), with Linux's convention for one longer than 64 KiB (IPv4 and UDP length 0); their
 * checksum field is a pseudo-header sum for the whole run, never verified.
 */
static __always_inline int check4(struct __sk_buff *skb, const struct parsed *p, const int loop)
{
	if (p->version != 4)
		return MCR_FP_MALFORMED_BAD_IP_HEADER_LENGTH;
	if (!p->ip_csum_ok)
		return MCR_FP_MALFORMED_BAD_IP_CHECKSUM;
	__u32 gso = skb->gso_size != 0;
	/* parse() read the headers, so the frame holds them. */
	__u32 avail = skb->len - p->l3_off;
	__u32 ip_len = p->ip_len;
	if (gso && ip_len == 0 && avail > 0xffff)
		ip_len = avail;
	if (ip_len < sizeof(struct iphdr))
		return MCR_FP_MALFORMED_BAD_TOTAL_LENGTH;
	if (ip_len > avail)
		return MCR_FP_MALFORMED_TRUNCATED;
	if (ip_len < sizeof(struct iphdr) + sizeof(struct udphdr))
		return MCR_FP_MALFORMED_BAD_TOTAL_LENGTH;
	__u32 udp_len = ip_len - sizeof(struct iphdr);
	if (p->udp_len != udp_len && !(gso && p->udp_len == 0 && udp_len > 0xffff))
		return MCR_FP_MALFORMED_BAD_UDP_LENGTH;
	if (!gso && !udp_csum_ok(skb, p, loop))
		return MCR_FP_MALFORMED_BAD_UDP_CHECKSUM;
	return MCR_FP_VERDICT_OK;
}

/*
 * check4 for IPv6, in the userspace parser's order (ipv6_datagram in relay/src/wire/frame):
 * version, payload length against the frame, room for the UDP header, UDP length, then the
 * checksum, which IPv6 makes mandatory: a zero one is malformed. (A local sender's
 * CHECKSUM_PARTIAL frame holds its pseudo-header sum there, which is zero only if that sum
 * is; userspace, which sees the ring's status, forwards such a frame; here it would be
 * counted malformed, 1 in 65,536 address-and-length combinations.) Extension headers never
 * reach here (PASS_EXTENSION_HEADERS).
 */
static __always_inline int check6(struct __sk_buff *skb, const struct parsed *p, const int loop)
{
	if (p->version != 6)
		return MCR_FP_MALFORMED_BAD_IP_HEADER_LENGTH;
	__u32 gso = skb->gso_size != 0;
	/* parse() read the headers, so the frame holds them. */
	__u32 avail = skb->len - p->l4_off;
	if (p->ip_len > avail)
		return MCR_FP_MALFORMED_TRUNCATED;
	if (p->ip_len < sizeof(struct udphdr))
		return MCR_FP_MALFORMED_BAD_TOTAL_LENGTH;
	if (p->udp_len != p->ip_len)
		return MCR_FP_MALFORMED_BAD_UDP_LENGTH;
	if (gso)
		return MCR_FP_VERDICT_OK;
	if (p->udp_check == 0 || !udp_csum_ok(skb, p, loop))
		return MCR_FP_MALFORMED_BAD_UDP_CHECKSUM;
	return MCR_FP_VERDICT_OK;
}

/* The checks of the frame's family, after the one both share: a second VLAN tag. */
static __always_inline int check(struct __sk_buff *skb, const struct parsed *p, const int loop)
{
	if (skb->vlan_present && p->tag_in_band)
		return MCR_FP_FILTERED_NOT_IPV4;
	if (p->ipv6)
		return check6(skb, p, loop);
	return check4(skb, p, loop);
}

static __always_inline void count_pass(__u8 why)
{
	__u32 zero = 0;
	struct mcr_fp_pass_counters *c = bpf_map_lookup_elem(&mcr_fp_pass, &zero);

	if (!c)
		return;
	/* Verifier: both fields are added to, by 0 or 1, instead of one chosen by a branch:
	 * clang turns the branch into one store through a computed field address, which
	 * programs loaded without CAP_PERFMON may not do ("pointer arithmetic prohibited"). */
	c->ip_options += why == PASS_OPTIONS;
	c->fragments += why == PASS_FRAGMENT;
	c->extension_headers += why == PASS_EXTENSION_HEADERS;
}

/*
 * Whether the program forwards this frame of a flow changing path (MCR_FP_RULE_FROM or
 * MCR_FP_RULE_UNTIL set). The receive timestamp is the arbiter: the stack stamps the skb
 * (net_timestamp_check, while a socket wants timestamps: mcrd keeps one that does) before
 * the packet taps and this hook run, and the taps write the same value into the rings'
 * tp_sec/tp_nsec, so the workers decide on the same number. A frame without one reads 0
 * here (timestamps off, or at tc ingress a delivery time, which this program, not reading
 * tstamp_type, is shown as 0), and the taps then report no software timestamp
 * (TP_STATUS_TS_SOFTWARE clear): both sides forward it.
 */
static __always_inline int owned(const struct __sk_buff *skb,
				 const struct mcr_fp_rule_head *rule)
{
	__u64 t = skb->tstamp;

	if (!t)
		return 1;
	if (rule->flags & MCR_FP_RULE_FROM)
		return t >= rule->cutoff;
	return t < rule->cutoff;
}

static __always_inline void count_handed_over(void)
{
	__u32 zero = 0;
	struct mcr_fp_pass_counters *c = bpf_map_lookup_elem(&mcr_fp_pass, &zero);

	if (c)
		c->handed_over++;
}

/* The rule for a datagram: the source's entry where the flow has one, else the any-source
 * entry. The any-source entry is looked up first: without MCR_FP_RULE_SOURCES it is the
 * answer (one lookup); with it, or when there is none, the source's entry is looked up. */
static __always_inline struct mcr_fp_rule *lookup(__u32 ifindex, const struct parsed *p)
{
	struct mcr_fp_key key = {
		.ifindex = ifindex,
		.group = p->daddr,
		.source = 0,
		.port = p->dport,
		.pad = 0,
	};
	struct mcr_fp_rule *any = bpf_map_lookup_elem(&mcr_fp_rules, &key);

	if (any && !(any->head.flags & MCR_FP_RULE_SOURCES))
		return any;
	key.source = p->saddr;
	struct mcr_fp_rule *rule = bpf_map_lookup_elem(&mcr_fp_rules, &key);
	return rule ? rule : any;
}

/* lookup for IPv6, in mcr_fp_rules6.
 *
 * Verifier: not inlined, for the same reason as parse_tagged: its 40-byte key then sits in a
 * frame of its own. (A static function, unlike a global one, may return a map value: the
 * verifier checks it in its caller's context.) */
static __attribute__((noinline)) struct mcr_fp_rule6 *lookup6(__u32 ifindex, const struct parsed *p)
{
	struct mcr_fp_key6 key = {
		.ifindex = ifindex,
		.port = p->dport,
		.pad = 0,
	};

	__builtin_memcpy(key.group, p->daddr6, sizeof(key.group));
	struct mcr_fp_rule6 *any = bpf_map_lookup_elem(&mcr_fp_rules6, &key);

	if (any && !(any->head.flags & MCR_FP_RULE_SOURCES))
		return any;
	__builtin_memcpy(key.source, p->saddr6, sizeof(key.source));
	struct mcr_fp_rule6 *rule = bpf_map_lookup_elem(&mcr_fp_rules6, &key);
	return rule ? rule : any;
}

/* One's-complement arithmetic for incremental checksum updates (RFC 1624): a field changing
 * from `old` to `new` adds ~old + new to the sum. Words are taken in memory order, as the
 * checksum field is, so byte order cancels out. */
static __always_inline __u64 csum_delta16(__u16 old, __u16 new)
{
	return (__u16)~old + (__u64)new;
}

static __always_inline __u64 csum_delta32(__u32 old, __u32 new)
{
	return (__u32)~old + (__u64)new;
}

/* Folds a 64-bit one's-complement sum to 32 bits, for the helpers' __wsum. */
static __always_inline __u32 csum_fold32(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

/* Writes an output's MACs over the frame's. dst_mac and src_mac are adjacent in both output
 * structs, as in the frame: three 4-byte words (the output is 4-byte aligned in the map
 * value; the frame need not be, which the architectures mcrd runs on, x86-64 and arm64, allow
 * for packet access). `data` holds at least the Ethernet header (the caller checked). */
static __always_inline void write_macs(void *data, const __u8 *dst_mac)
{
	__u32 *macs = data;
	const __u32 *new_macs = (const __u32 *)dst_mac;

	macs[0] = new_macs[0];
	macs[1] = new_macs[1];
	macs[2] = new_macs[2];
}

/* Writes an output's ports over the datagram's (`src_port` 0 keeps the sender's) and returns
 * the one's-complement change they make to the UDP checksum. */
static __always_inline __u64 write_ports(struct udphdr *udp, __u16 src_port, __u16 dst_port)
{
	__u64 delta = 0;

	if (src_port && udp->source != src_port) {
		delta += csum_delta16(udp->source, src_port);
		udp->source = src_port;
	}
	if (udp->dest != dst_port) {
		delta += csum_delta16(udp->dest, dst_port);
		udp->dest = dst_port;
	}
	return delta;
}

/* 1 once the kernel refused MCR_BPF_F_IPV6 (Linux < 6.16): later updates go without it at
 * once, instead of paying a refused helper call first for every datagram and output. Shared by
 * all CPUs; a race costs one refused call more, nothing else. */
__u32 mcr_fp_ipv6_flag_refused = 0;

/* The UDP checksum update of an IPv6 rewrite: bpf_l4_csum_replace with MCR_BPF_F_IPV6 where
 * the kernel takes the flag, else without it (Linux < 6.16: there, only a CHECKSUM_COMPLETE
 * frame's skb->csum ends up wrong, and its receiver then verifies the datagram in software
 * and logs a checksum fault; the checksum in the frame is right either way). */
static __always_inline long l4_csum_replace6(struct __sk_buff *skb, __u32 delta, __u64 flags)
{
	if (!mcr_fp_ipv6_flag_refused) {
		long rc = bpf_l4_csum_replace(skb, UDP_CSUM_OFF6, 0, delta, flags | MCR_BPF_F_IPV6);

		if (rc != -22 /* EINVAL: a kernel without the flag */)
			return rc;
		mcr_fp_ipv6_flag_refused = 1;
	}
	return bpf_l4_csum_replace(skb, UDP_CSUM_OFF6, 0, delta, flags);
}

/* The UDP checksum update of a rewrite, after every header store: the pseudo-header's change
 * and the ports' change, each with one helper call at most (rewrite says why two). `ipv6` is
 * a constant at each call. The helpers change packet data: the caller's packet pointers are
 * stale afterwards. */
static __always_inline int update_udp_csum(struct __sk_buff *skb, __u64 pseudo_delta,
					   __u64 port_delta, const int ipv6)
{
	__u64 pseudo = BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0;

	if (pseudo_delta) {
		long rc = ipv6 ? l4_csum_replace6(skb, csum_fold32(pseudo_delta), pseudo) :
				 bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0,
						     csum_fold32(pseudo_delta), pseudo);
		if (rc)
			return -1;
	}
	if (port_delta) {
		long rc = ipv6 ? l4_csum_replace6(skb, csum_fold32(port_delta),
						  BPF_F_MARK_MANGLED_0) :
				 bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, csum_fold32(port_delta),
						     BPF_F_MARK_MANGLED_0);
		if (rc)
			return -1;
	}
	return 0;
}

/*
 * Rewrites the (untagged) frame in place for `out`. Each field is replaced relative to what
 * the frame holds now, so consecutive outputs rewrite from the previous output's values.
 *
 * Fields are written through the packet pointer, and the IPv4 header checksum is updated
 * here (it is never offloaded). The UDP checksum is updated by bpf_l4_csum_replace, at most
 * twice (addresses, ports), each with the whole change at once: what to write depends on
 * skb->ip_summed, which only the kernel can read without CAP_PERFMON (CHECKSUM_PARTIAL holds
 * the pseudo-header sum, which port changes do not touch; CHECKSUM_COMPLETE's skb->csum
 * follows pseudo-header changes). BPF_F_MARK_MANGLED_0 keeps a zero UDP checksum ("none")
 * zero and writes a computed zero as 0xffff, as before.
 */
static __always_inline int rewrite(struct __sk_buff *skb, const struct mcr_fp_output *out)
{
	void *data = (void *)(long)skb->data;

	/* parse() made the headers linear and untag() keeps them so; never expected. */
	if (data + HDRS_LEN > (void *)(long)skb->data_end)
		return -1;
	write_macs(data, out->dst_mac);
	struct iphdr *ip = data + L3_OFF;
	struct udphdr *udp = data + L4_OFF;

	__u64 ip_delta = 0;
	__u16 *ttl_word = (__u16 *)&ip->ttl; /* (TTL, protocol) */
	if (ip->ttl != out->ttl) {
		__u16 old = *ttl_word;
		ip->ttl = out->ttl;
		ip_delta += csum_delta16(old, *ttl_word);
	}
	if (out->dscp != MCR_FP_KEEP_DSCP) {
		__u16 *tos_word = (__u16 *)ip; /* (version/IHL, TOS) */
		__u8 tos = (out->dscp << 2) | (ip->tos & 0x3);
		if (ip->tos != tos) {
			__u16 old = *tos_word;
			ip->tos = tos;
			ip_delta += csum_delta16(old, *tos_word);
		}
	}
	__u64 pseudo_delta = 0;
	if (ip->saddr != out->src_ip) {
		pseudo_delta += csum_delta32(ip->saddr, out->src_ip);
		ip->saddr = out->src_ip;
	}
	if (ip->daddr != out->dst_ip) {
		pseudo_delta += csum_delta32(ip->daddr, out->dst_ip);
		ip->daddr = out->dst_ip;
	}
	ip_delta += pseudo_delta;
	if (ip_delta)
		ip->check = ~csum_fold_((__u16)~ip->check + ip_delta);

	__u64 port_delta = write_ports(udp, out->src_port, out->dst_port);
	/* The helpers change packet data: last. */
	return update_udp_csum(skb, pseudo_delta, port_delta, 0);
}

/* The one's-complement change of a 16-byte address, from `old` to `new`; `old` becomes `new`. */
static __always_inline __u64 replace_address6(__u32 *old, const __u32 *new)
{
	__u64 delta = 0;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (old[i] != new[i]) {
			delta += csum_delta32(old[i], new[i]);
			old[i] = new[i];
		}
	}
	return delta;
}

/*
 * rewrite for IPv6: MACs, hop limit, traffic class, addresses, ports. IPv6 has no header
 * checksum; the UDP checksum covers the addresses through the pseudo-header and is updated
 * as rewrite does for IPv4 (the same reasons for two calls at most).
 */
static __always_inline int rewrite6(struct __sk_buff *skb, const struct mcr_fp_output6 *out)
{
	void *data = (void *)(long)skb->data;

	/* parse() made the headers linear and untag() keeps them so; never expected. */
	if (data + HDRS6_LEN > (void *)(long)skb->data_end)
		return -1;
	write_macs(data, out->dst_mac);
	struct ipv6hdr *ip = data + L3_OFF;
	struct udphdr *udp = data + L4_OFF6;

	ip->hop_limit = out->hop_limit;
	if (out->dscp != MCR_FP_KEEP_DSCP) {
		/* Version (4 bits), traffic class (8), flow label (20): the class straddles the
		 * first two bytes. The ECN bits (the class's low two) are kept. */
		__u8 *b = (__u8 *)ip;
		__u8 ecn = (b[1] >> 4) & 0x3;
		__u8 tclass = (out->dscp << 2) | ecn;
		b[0] = (b[0] & 0xf0) | (tclass >> 4);
		b[1] = (b[1] & 0x0f) | (tclass << 4);
	}
	__u64 pseudo_delta = replace_address6(ip->saddr.in6_u.u6_addr32, out->src_ip);
	pseudo_delta += replace_address6(ip->daddr.in6_u.u6_addr32, out->dst_ip);

	__u64 port_delta = write_ports(udp, out->src_port, out->dst_port);
	/* The helpers change packet data: last. */
	return update_udp_csum(skb, pseudo_delta, port_delta, 1);
}

/* Datagrams in the frame: a GSO/GRO super-frame carries gso_segs of them with one set of
 * headers. (Read per call: BPF functions take at most 5 arguments.) */
static __always_inline __u32 datagrams(const struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

/* What mcr_fp_send and mcr_fp_send6 share once the frame is rewritten (`rewrite_rc`, 0 on
 * success) for output `ifindex`: the counts in `c`, the MTU check and the redirect. */
static __always_inline int deliver(struct __sk_buff *skb, int rewrite_rc, __u32 ifindex,
				   struct mcr_fp_output_counters *c, __u32 payload, __u32 last)
{
	__u32 segs = datagrams(skb);
	c->matched += segs;
	if (rewrite_rc) {
		c->err_rewrite += segs;
		return last ? TC_ACT_SHOT : 0;
	}
	__u32 mtu_len = 0;
	long mtu_rc = bpf_check_mtu(skb, ifindex, &mtu_len, 0, 0);
	if (mtu_rc != BPF_MTU_CHK_RET_SUCCESS) {
		/* A negative return is -EINVAL, which with flags 0 means no device has this
		 * ifindex (the output was deleted); only a positive one is about the MTU.
		 * Both stores are made, without a branch: the program with an if/else here was
		 * refused (EACCES) without CAP_PERFMON, the packaged unit's capabilities (test
		 * runs_as_the_packaged_unit_does_with_net_raw_bpf_and_net_admin_only). */
		__u64 nodev = mtu_rc < 0;
		c->err_nodev += nodev * segs;
		c->err_mtu += (1 - nodev) * segs;
		return last ? TC_ACT_SHOT : 0;
	}
	if (last) {
		/* "sent" here means handed to the device's queue: drops after this point (qdisc,
		 * link) are the device's counters, as for the userspace path's sends. */
		c->sent += segs;
		c->sent_bytes += payload;
		return bpf_redirect(ifindex, 0);
	}
	if (bpf_clone_redirect(skb, ifindex, 0)) {
		c->err_redirect += segs;
		return 0;
	}
	c->sent += segs;
	c->sent_bytes += payload;
	return 0;
}

/*
 * Sends the frame to one output: rewrite, MTU check, redirect. Returns the TC verdict for
 * the last output (TC_ACT_REDIRECT, or TC_ACT_SHOT when it could not be sent) and 0 for the
 * others.
 *
 * Verifier: a global (not static) noinline function is verified once, on its own, instead
 * of once per call site and loop iteration: with this body inlined, 8 outputs took 324k
 * verifier instructions (and 32 were refused); as a global function, about 9k. A global
 * function's memory arguments may be NULL as far as the verifier knows, hence the checks.
 */
__attribute__((noinline)) int mcr_fp_send(struct __sk_buff *skb, const struct mcr_fp_output *out,
					  struct mcr_fp_output_counters *c, __u32 payload,
					  __u32 last)
{
	/* `skb` is the context, never NULL; comparing it is refused without CAP_PERFMON. */
	if (!out || !c)
		return TC_ACT_SHOT;
	return deliver(skb, rewrite(skb, out), out->ifindex, c, payload, last);
}

/* mcr_fp_send for an IPv6 output (a global function of its own for the same reason). */
__attribute__((noinline)) int mcr_fp_send6(struct __sk_buff *skb,
					   const struct mcr_fp_output6 *out,
					   struct mcr_fp_output_counters *c, __u32 payload,
					   __u32 last)
{
	if (!out || !c)
		return TC_ACT_SHOT;
	return deliver(skb, rewrite6(skb, out), out->ifindex, c, payload, last);
}

/* The sequence number of the RTP packet of `len` bytes at `off`, or -1 if it is not RTP
 * version 2 (shorter than the 12-byte header, another version, RTCP's payload types 72-76),
 * as the userspace monitor decides. */
static __always_inline int rtp_sequence(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 h[4];

	if (len < 12 || bpf_skb_load_bytes(skb, off, h, sizeof(h)))
		return -1;
	__u8 pt = h[1] & 0x7f;
	if (h[0] >> 6 != 2 || (pt >= 72 && pt <= 76))
		return -1;
	return h[2] << 8 | h[3];
}

/* Checks one datagram's sequence number (-1: not RTP) against the stream's last, as one
 * step under the flow's lock (see struct mcr_fp_monitor). No helper may be called while the
 * lock is held, so the packet is read before. */
static __always_inline void rtp_check(struct mcr_fp_monitor *m, int seq)
{
	bpf_spin_lock(&m->lock);
	m->datagrams++;
	if (seq < 0) {
		m->foreign++;
	} else if (m->last_seq == MCR_FP_NO_SEQ) {
		m->last_seq = seq;
	} else {
		__u16 delta = (__u16)seq - (__u16)m->last_seq;
		if (delta == 0 || delta > 0xffff - MCR_FP_RTP_MAX_MISORDER) {
			m->repeats++;
		} else {
			if (delta > 1) {
				m->gaps++;
				if (delta < MCR_FP_RTP_MAX_DROPOUT)
					m->lost += delta - 1;
			}
			m->last_seq = seq;
		}
	}
	bpf_spin_unlock(&m->lock);
}

/* The walk over a frame's datagrams: one, or each segment of a GSO super-frame. */
struct rtp_walk {
	struct __sk_buff *skb;
	struct mcr_fp_monitor *m;
	__u32 off;  /* the next datagram's UDP payload */
	__u32 left; /* payload bytes from `off` to the end of the frame's payload */
	__u32 size; /* payload bytes per datagram (the last may be shorter) */
};

/* bpf_loop's callback: checks the datagram at w->off and moves to the next; 1 ends the loop. */
static long rtp_check_next(__u32 i, void *ctx)
{
	struct rtp_walk *w = ctx;
	__u32 len = w->left < w->size ? w->left : w->size;

	rtp_check(w->m, rtp_sequence(w->skb, w->off, len));
	w->off += len;
	w->left -= len;
	return w->left ? 0 : 1;
}

/*
 * The stream check of a frame of an RTP-monitored rule, before any rewrite. `hdrs` is the
 * offset of the UDP payload, `udp_payload` the payload's length by the UDP header (checked
 * against the IP header's length by check()). Returns 0.
 *
 * Verifier: a global function, verified once on its own, so that the rest of the program is
 * not verified once more for monitored rules (inlined, the whole program took 3,102 verifier
 * instructions as root, against 2,341 like this); and the datagrams are walked with
 * bpf_loop, whose callback is verified once, where a bounded loop over the GSO segments
 * would be verified once per iteration of its bound.
 */
__attribute__((noinline)) int mcr_fp_monitor_rtp(struct __sk_buff *skb, __u32 slot, __u32 hdrs,
						 __u32 udp_payload, __u32 segs)
{
	struct mcr_fp_monitor *m = bpf_map_lookup_elem(&mcr_fp_monitors, &slot);

	if (!m)
		return 0;
	struct rtp_walk w = { .skb = skb, .m = m, .off = hdrs };
	if (segs > 1) {
		/* UDP GSO: gso_size is the payload of one segment. */
		w.left = skb->len > hdrs ? skb->len - hdrs : 0;
		w.size = skb->gso_size;
	} else {
		/* The IP length, not the frame, bounds the datagram (a frame may carry
		 * Ethernet padding), as on the userspace path. */
		w.left = udp_payload;
		w.size = w.left;
	}
	bpf_loop(segs, rtp_check_next, &w, 0);
	return 0;
}

/* Removes VLAN tags (metadata, then one in band) so the copies go out untagged, as the
 * userspace path's sends do. A tag in skb metadata would otherwise be carried onto every
 * copy. Returns 0 on success. */
static __always_inline int untag(struct __sk_buff *skb, const struct parsed *p)
{
	if (skb->vlan_present && bpf_skb_vlan_pop(skb))
		return -1;
	if (p->tag_in_band && bpf_skb_vlan_pop(skb))
		return -1;
	return 0;
}

/* The rule of the frame `p` describes, found in its family's map: its head, and its output
 * set in `rule4` or `rule6` (the other is NULL). NULL if no rule wants the frame. */
static __always_inline struct mcr_fp_rule_head *rule_of(struct __sk_buff *skb,
							 const struct parsed *p,
							 struct mcr_fp_rule **rule4,
							 struct mcr_fp_rule6 **rule6)
{
	if (p->ipv6) {
		*rule6 = lookup6(skb->ifindex, p);
		return *rule6 ? &(*rule6)->head : NULL;
	}
	*rule4 = lookup(skb->ifindex, p);
	return *rule4 ? &(*rule4)->head : NULL;
}

/* The program, for a kernel with bpf_loop (`loop` 1) or without (0: Linux < 5.17). */
static __always_inline int fastpath(struct __sk_buff *skb, const int loop)
{
	struct parsed p = {};
	struct mcr_fp_rule *rule4 = NULL;
	struct mcr_fp_rule6 *rule6 = NULL;

	if (parse(skb, &p))
		return MCR_TCX_NEXT;
	if (p.pass != PASS_NONE) {
		count_pass(p.pass);
		return MCR_TCX_NEXT;
	}
	struct mcr_fp_rule_head *rule = rule_of(skb, &p, &rule4, &rule6);
	if (!rule)
		return MCR_TCX_NEXT;
	/* A flow changing path: a frame its cutoff gives to the workers is theirs whole, also if
	 * it is malformed (they captured it, and count it). */
	if ((rule->flags & (MCR_FP_RULE_FROM | MCR_FP_RULE_UNTIL)) && !owned(skb, rule)) {
		count_handed_over();
		return MCR_TCX_NEXT;
	}
	/* Refused frames go on to the stack, as they do beside the userspace path's taps. */
	int refused = check(skb, &p, loop);
	if (refused != MCR_FP_VERDICT_OK) {
		count_refused(refused);
		return MCR_TCX_NEXT;
	}
	__u32 slot = rule->slot;
	struct mcr_fp_rule_counters *rc = bpf_map_lookup_elem(&mcr_fp_counters, &slot);
	if (!rc) {
		__u32 zero = 0;
		struct mcr_fp_pass_counters *pc = bpf_map_lookup_elem(&mcr_fp_pass, &zero);
		if (pc)
			pc->no_counters++;
		return MCR_TCX_NEXT;
	}
	__u32 segs = datagrams(skb);
	/* Below the rule's min_ttl: left alone, as the userspace path leaves it (after the
	 * checks, so that a malformed frame is counted as malformed on both paths). */
	if (p.ttl < rule->min_ttl) {
		rc->below_min_ttl += segs;
		rc->below_min_ttl_frames++;
		return MCR_TCX_NEXT;
	}
	__u32 hdrs = p.l4_off + sizeof(struct udphdr);
	__u32 payload = skb->len > hdrs ? skb->len - hdrs : 0;
	rc->frames++;
	rc->matched += segs;
	rc->bytes += payload;
	rc->frame_bytes += skb->len;
	/* A rule without monitor pays this one load and branch. Without bpf_loop mcrd keeps
	 * monitored rules in userspace (relay/src/fastpath/plan.rs). */
	if (loop && rule->monitor == MCR_FP_MONITOR_RTP) {
		__u32 udp_payload = p.udp_len > sizeof(struct udphdr) ?
					    p.udp_len - sizeof(struct udphdr) : 0;
		mcr_fp_monitor_rtp(skb, slot, hdrs, udp_payload, segs);
	}

	__u32 n = rule->n_outputs;
	if (n == 0 || n > MCR_FP_MAX_OUTPUTS)
		return TC_ACT_SHOT;
	if (untag(skb, &p)) {
		/* Nothing was sent: count every output as failed, so matched = sent + errors. */
		for (__u32 i = 0; i < MCR_FP_MAX_OUTPUTS && i < n; i++) {
			rc->outputs[i].matched += segs;
			rc->outputs[i].err_rewrite += segs;
		}
		return TC_ACT_SHOT;
	}
	int verdict = TC_ACT_SHOT;
	/* Verifier: the bound MCR_FP_MAX_OUTPUTS makes the loop provably finite; `i < n` ends
	 * it at the rule's real output count. */
	for (__u32 i = 0; i < MCR_FP_MAX_OUTPUTS; i++) {
		if (i >= n)
			break;
		__u32 last = i + 1 == n;
		if (rule6)
			verdict = mcr_fp_send6(skb, &rule6->outputs[i], &rc->outputs[i], payload,
					       last);
		else if (rule4)
			verdict = mcr_fp_send(skb, &rule4->outputs[i], &rc->outputs[i], payload,
					      last);
	}
	return verdict;
}

/*
 * The entry points: one program for kernels with bpf_loop (Linux 5.17) and one for those
 * without, which sums UDP checksums with a bounded loop and has no RTP check. mcrd probes
 * the kernel and loads one of them (relay/src/fastpath/attach.rs); `loop` is a constant in
 * each, so each holds only its own calls and the verifier never sees the other's. A flag
 * read at run time (a `const volatile`) would not do: the verifier skips the branch a known
 * constant rules out only for a loader with CAP_PERFMON; without it (the packaged unit's
 * CAP_BPF and CAP_NET_ADMIN) it walks that branch too, as speculative execution could, and a
 * helper the kernel lacks is refused there (with the bounded loop walked under speculation
 * as well, this kernel refused the program: E2BIG).
 *
 * SEC("tc"): plain BPF_PROG_TYPE_SCHED_CLS programs with no expected attach type, which both
 * hooks take, so mcrd loads and verifies one program whichever hook it picks: the kernel ties
 * a SCHED_CLS program to no attach point at load (bpf_prog_load_check_attach has no case for
 * it), a tcx link checks only the attach type it is created with
 * (bpf_prog_attach_check_attach_type), and cls_bpf takes any SCHED_CLS program. "tcx/ingress"
 * would hand kernels older than tcx an attach type they never heard of (ignored, for no gain).
 * The kernel names each program after its function: mcrd knows its programs by the prefix
 * "mcr_fastpath" (at most 15 characters in all).
 */
SEC("tc")
int mcr_fastpath(struct __sk_buff *skb)
{
	return fastpath(skb, 1);
}

SEC("tc")
int mcr_fastpath_nl(struct __sk_buff *skb)
{
	return fastpath(skb, 0);
}

/* bpf_check_mtu is a GPL-only helper: the kernel loads this program only under a
 * GPL-compatible licence, hence this file's dual licence (the rest of MCR is Apache-2.0). */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
