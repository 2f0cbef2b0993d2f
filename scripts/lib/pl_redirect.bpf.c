// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The floor of a hop for scripts/pipeline_veth.sh (relay kind redirect): a TC ingress
 * program on in0 that moves every frame to out0 unchanged, with no parsing, lookup or header
 * rewrite. What a hop costs then is what crossing one more veth and namespace costs (the
 * device's transmit, the backlog, the receive path up to the TC hook, the redirect), which no
 * forwarding implementation on this topology can avoid. Compiled per hop with
 * -DOUT_IFINDEX=N (out0's ifindex in that namespace), attached with tc (clsact, cls_bpf).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int pl_redirect(struct __sk_buff *skb)
{
	return bpf_redirect(OUT_IFINDEX, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
