/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map layouts of mcrd's kernel fast path, defined once. The C program uses them directly;
 * the Rust side gets the same layouts from the skeleton libbpf-cargo generates from the
 * program's BTF (relay/build.rs), so the two cannot drift.
 *
 * Byte order: addresses and ports are stored in network byte order, as they appear in the
 * packet, so the program compares and copies them without conversion.
 */
#ifndef MCR_FASTPATH_H
#define MCR_FASTPATH_H

#include <linux/bpf.h> /* struct bpf_spin_lock */
#include <linux/types.h>

/* Outputs one rule may have on the fast path; rules with more run in userspace. */
#define MCR_FP_MAX_OUTPUTS 16
/* Rules (map entries and counter slots) the fast path holds; more run in userspace. */
#define MCR_FP_MAX_RULES 1024

/* What a datagram is matched on. `source` 0 is the any-source entry (see MCR_FP_RULE_SOURCES). */
struct mcr_fp_key {
	__u32 ifindex;
	__u32 group;  /* destination address, network order */
	__u32 source; /* source address or 0, network order */
	__u16 port;   /* destination UDP port, network order */
	__u16 pad;    /* always 0: hash keys compare every byte */
};

/* The IPv6 flows' key, in a map of its own (mcr_fp_rules6) so that IPv4 lookups keep hashing
 * 16 bytes, not 40. All-zero `source` is the any-source entry. */
struct mcr_fp_key6 {
	__u32 ifindex;
	__u16 port;      /* destination UDP port, network order */
	__u16 pad;       /* always 0 */
	__u32 group[4];  /* destination address, network order */
	__u32 source[4]; /* source address or all zero, network order */
};

/* One output: everything the program writes into the copy it sends. */
struct mcr_fp_output {
	__u8 dst_mac[6]; /* multicast MAC of the group, or the next hop's MAC */
	__u8 src_mac[6]; /* the output interface's MAC (follows dst_mac: one 12-byte store) */
	__u32 ifindex;   /* output interface */
	__u32 dst_ip;    /* network order */
	__u32 src_ip;    /* the output interface's address, network order */
	__u16 dst_port;  /* network order */
	__u16 src_port;  /* network order; 0 keeps the sender's port */
	__u8 ttl;
	__u8 dscp;       /* 0-63, the ECN bits kept; MCR_FP_KEEP_DSCP keeps the received DSCP */
	__u8 pad[2];
};

#define MCR_FP_KEEP_DSCP 0xff

/* One IPv6 output: the IPv4 one's fields with 16-byte addresses and a hop limit. */
struct mcr_fp_output6 {
	__u8 dst_mac[6]; /* multicast MAC of the group (33:33 + its low 32 bits), or the next hop's */
	__u8 src_mac[6]; /* the output interface's MAC (follows dst_mac: one 12-byte store) */
	__u32 ifindex;   /* output interface */
	__u32 dst_ip[4]; /* network order */
	__u32 src_ip[4]; /* the address the kernel would send from, network order */
	__u16 dst_port;  /* network order */
	__u16 src_port;  /* network order; 0 keeps the sender's port */
	__u8 hop_limit;
	__u8 dscp;       /* as in mcr_fp_output */
	__u8 pad[2];
};

/* What the program checks of a rule's datagrams (`monitor` on the rule). MPEG-TS is not
 * here: its rules run in userspace (relay/README.md, "Stream monitoring", says why). */
#define MCR_FP_MONITOR_NONE 0
#define MCR_FP_MONITOR_RTP 1

/* mcr_fp_rule.flags. MCR_FP_RULE_SOURCES, on an any-source entry: its flow (input, group,
 * port) has source-specific entries too. The program looks up the any-source entry first and
 * the source's entry only when this is set (or there is no any-source entry), so a flow
 * without source-specific rules, the common case, costs one hash lookup, not two. mcrd sets
 * it whenever the flow has a source-specific rule on the kernel path; set without one, it
 * costs a lookup that misses and nothing else. */
#define MCR_FP_RULE_SOURCES 1

/*
 * mcr_fp_rule.flags while the rule's flow changes path (relay/src/fastpath/switch.rs): the
 * program forwards only the frames whose receive timestamp (skb->tstamp, the value the
 * packet sockets' rings report for the same frame) is at or after `cutoff`
 * (MCR_FP_RULE_FROM: the flow is coming to the kernel) or before it (MCR_FP_RULE_UNTIL:
 * leaving it); the workers forward the others. A frame without a timestamp (0) is forwarded
 * by both, as before the cutoff existed: twice rather than never.
 */
#define MCR_FP_RULE_FROM 2
#define MCR_FP_RULE_UNTIL 4

/* What every rule entry starts with, whatever its family: mcrd reads and rewrites it (slot,
 * flags, cutoff) without knowing the outputs' layout. */
struct mcr_fp_rule_head {
	__u32 slot;      /* index of this rule's counters in mcr_fp_counters and mcr_fp_monitors */
	__u32 n_outputs; /* 1..MCR_FP_MAX_OUTPUTS */
	__u8 monitor;    /* MCR_FP_MONITOR_* */
	__u8 min_ttl;    /* 0 forwards every TTL; else a datagram with a lower TTL (IPv6: hop
			  * limit) is counted in below_min_ttl and left to the stack */
	__u8 pad[2];
	__u32 flags;     /* MCR_FP_RULE_* */
	__u64 cutoff;    /* CLOCK_REALTIME ns, with MCR_FP_RULE_FROM or MCR_FP_RULE_UNTIL */
};

/* A rule's whole output set: replacing a rule is one map update, so a packet sees either
 * the old set or the new one, never a mix. */
struct mcr_fp_rule {
	struct mcr_fp_rule_head head;
	struct mcr_fp_output outputs[MCR_FP_MAX_OUTPUTS];
};

/* An IPv6 rule (mcr_fp_rules6). Its counters and stream check share the IPv4 rules' slots. */
struct mcr_fp_rule6 {
	struct mcr_fp_rule_head head;
	struct mcr_fp_output6 outputs[MCR_FP_MAX_OUTPUTS];
};

/* Per output, per CPU. Law: matched = sent + err_mtu + err_redirect + err_rewrite + err_nodev. */
struct mcr_fp_output_counters {
	__u64 matched;    /* datagrams (a GSO super-frame counts gso_segs) */
	__u64 sent;       /* handed to the output device */
	__u64 sent_bytes; /* UDP payload bytes of `sent` */
	__u64 err_mtu;    /* larger than the output's MTU (bpf_check_mtu) */
	__u64 err_redirect; /* bpf_clone_redirect failed */
	__u64 err_rewrite;  /* a header store or checksum update failed */
	__u64 err_nodev;    /* no device has the output's ifindex any more (deleted) */
};

/* Per rule, per CPU. */
struct mcr_fp_rule_counters {
	__u64 frames;  /* skbs matched (a GSO super-frame is one) */
	__u64 matched; /* datagrams matched */
	__u64 bytes;   /* UDP payload bytes of `matched` */
	__u64 frame_bytes; /* bytes of the matched frames, link layer included */
	__u64 below_min_ttl;        /* datagrams below the rule's min_ttl, not in `matched` */
	__u64 below_min_ttl_frames; /* their skbs */
	struct mcr_fp_output_counters outputs[MCR_FP_MAX_OUTPUTS];
};

/*
 * Why the program refuses a frame of one of its flows: relay::wire::Malformed's kinds, in its
 * index order (Malformed::ALL; a unit test checks the two agree), then one Filtered kind. The
 * program refuses what the userspace parser refuses, so that a frame lands in the same
 * counter on both paths.
 */
#define MCR_FP_MALFORMED_TRUNCATED 0
#define MCR_FP_MALFORMED_BAD_IP_HEADER_LENGTH 1
#define MCR_FP_MALFORMED_BAD_TOTAL_LENGTH 2
#define MCR_FP_MALFORMED_BAD_IP_CHECKSUM 5
#define MCR_FP_MALFORMED_BAD_UDP_LENGTH 6
#define MCR_FP_MALFORMED_BAD_UDP_CHECKSUM 7
#define MCR_FP_MALFORMED_KINDS 11 /* Malformed::COUNT */
#define MCR_FP_FILTERED_NOT_IPV4 MCR_FP_MALFORMED_KINDS /* a second VLAN tag (QinQ) */
#define MCR_FP_VERDICT_OK (-1)

/* Frames on a hooked interface the program hands to the stack, per CPU. Not part of any
 * flow's counts. */
struct mcr_fp_pass_counters {
	/* Left to the userspace path, whose packet filter lets them through: */
	__u64 ip_options; /* IPv4 with options: userspace counts them as malformed.ip_options */
	__u64 fragments;  /* IPv4 fragments: userspace counts them as malformed.fragment */
	/* IPv6 with extension headers (hop-by-hop, routing, fragment, destination options):
	 * userspace walks them (forwarding or counting the frame, wire/ipv6.rs). */
	__u64 extension_headers;
	__u64 no_counters; /* matched a rule whose counter slot was out of range (never expected) */
	/* Refused and counted here only (the packet filter excludes the program's flows), in
	 * the userspace path's terms: malformed.<kind> by index, and filtered.not_ipv4. */
	__u64 malformed[MCR_FP_MALFORMED_KINDS];
	__u64 not_ipv4;
	/* Frames of a flow changing path that its cutoff gives to the workers (not counted in
	 * the rule's counters: the workers count them). */
	__u64 handed_over;
};

/*
 * A monitored rule's stream check, with the definitions of the userspace monitor
 * (relay/src/counters/monitor.rs) so the counts mean the same on both paths. RTP (RFC 3550
 * A.1's thresholds): a sequence number 2..MCR_FP_RTP_MAX_DROPOUT-1 ahead of the last is a gap
 * of (delta - 1) lost; one at or up to MCR_FP_RTP_MAX_MISORDER behind is a repeat (duplicate
 * or reordered); any other jump is a gap with nothing counted lost and restarts the count.
 *
 * One per slot, shared by all CPUs, not per CPU: the last sequence number belongs to the
 * whole stream, and a stream's datagrams may arrive on several CPUs. The lock makes each
 * datagram's check-and-update one step, so concurrent datagrams are checked in some order
 * (the order they took the lock) and no update is lost; readers copy it with BPF_F_LOCK.
 */
struct mcr_fp_monitor {
	struct bpf_spin_lock lock;
	__u32 last_seq;  /* the last in-order sequence number, MCR_FP_NO_SEQ before the first */
	__u64 datagrams; /* datagrams checked (each segment of a GSO super-frame) */
	__u64 foreign;   /* not RTP version 2 (too short, another version, RTCP) */
	__u64 gaps;      /* sequence gaps */
	__u64 lost;      /* sequence numbers skipped */
	__u64 repeats;   /* at or behind the last: duplicates and reordered datagrams */
};

#define MCR_FP_NO_SEQ 0xffffffff
#define MCR_FP_RTP_MAX_DROPOUT 3000
#define MCR_FP_RTP_MAX_MISORDER 100

#endif
