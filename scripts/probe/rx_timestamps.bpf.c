// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Probe for scripts/probe-rx-timestamps.py: records, per UDP datagram to port 7777, the
 * receive timestamp TC ingress sees (__sk_buff->tstamp, read as mcrd's fast path reads it:
 * without tstamp_type, so a delivery time reads as 0), keyed by the datagram's sequence
 * number (its first 4 payload bytes, big endian).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SLOTS 8192

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} probe_tstamp SEC(".maps");

SEC("tc")
int probe_rx_tstamp(struct __sk_buff *skb)
{
	__u8 h[14 + 20 + 8 + 4];

	if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
		return TC_ACT_UNSPEC;
	/* IPv4 without options, UDP, destination port 7777. */
	if (h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || h[23] != 17)
		return TC_ACT_UNSPEC;
	if (h[36] != (7777 >> 8) || h[37] != (7777 & 0xff))
		return TC_ACT_UNSPEC;
	__u32 seq = (__u32)h[42] << 24 | (__u32)h[43] << 16 | (__u32)h[44] << 8 | h[45];
	__u32 key = seq % SLOTS;
	__u64 t = skb->tstamp;

	bpf_map_update_elem(&probe_tstamp, &key, &t, BPF_ANY);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
