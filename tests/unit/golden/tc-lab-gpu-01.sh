#!/bin/sh
# llmcluster host QoS for gpu-01 (pool gpu): tc htb, one class per QoS class.
# Generated from the IP and QoS plans: do not edit, change the spec instead.
# Link speed 100gbit; rates are the classes' bandwidth shares, every class may borrow up to the link.
# Kernel-path traffic only: RoCE and CNP never reach these qdiscs (the NIC queues them; switches
# trust dscp, PFC on priority 3, RDMA-CM ToS 106).
# Re-running rebuilds the root qdisc of every interface below (classes and filters included).
# Dry run: TC="echo tc" sh <this file>
set -eu
TC="${TC:-tc}"

llmcluster_qos() {
	dev="$1"
	$TC qdisc del dev "$dev" root 2>/dev/null || true
	$TC qdisc replace dev "$dev" root handle 1: htb default 15
	$TC class replace dev "$dev" parent 1: classid 1:1 htb rate 100gbit ceil 100gbit burst 1250000b cburst 1250000b quantum 200000
	# roce: DSCP 26 (af31) -> PCP 3, queue 3, 50 %, lossless
	$TC class replace dev "$dev" parent 1:1 classid 1:10 htb rate 50gbit ceil 100gbit prio 4 burst 1250000b cburst 1250000b quantum 200000
	# cnp: DSCP 48 (cs6) -> PCP 6, queue 6, 0 %, strict priority
	$TC class replace dev "$dev" parent 1:1 classid 1:11 htb rate 100mbit ceil 100gbit prio 0 burst 1250000b cburst 1250000b quantum 200000
	# inference: DSCP 34 (af41) -> PCP 4, queue 4, 20 %
	$TC class replace dev "$dev" parent 1:1 classid 1:12 htb rate 20gbit ceil 100gbit prio 3 burst 1250000b cburst 1250000b quantum 200000
	# storage: DSCP 10 (af11) -> PCP 1, queue 1, 20 %
	$TC class replace dev "$dev" parent 1:1 classid 1:13 htb rate 20gbit ceil 100gbit prio 6 burst 1250000b cburst 1250000b quantum 200000
	# mgmt: DSCP 16 (cs2) -> PCP 2, queue 2, 5 %
	$TC class replace dev "$dev" parent 1:1 classid 1:14 htb rate 5gbit ceil 100gbit prio 5 burst 1250000b cburst 1250000b quantum 200000
	# default: DSCP 0 (cs0) -> PCP 0, queue 0, 5 %
	$TC class replace dev "$dev" parent 1:1 classid 1:15 htb rate 5gbit ceil 100gbit prio 7 burst 1250000b cburst 1250000b quantum 200000
	$TC filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip dsfield 0x68 0xfc flowid 1:10
	$TC filter add dev "$dev" parent 1: protocol ip prio 2 u32 match ip dsfield 0xc0 0xfc flowid 1:11
	$TC filter add dev "$dev" parent 1: protocol ip prio 3 u32 match ip dsfield 0x88 0xfc flowid 1:12
	$TC filter add dev "$dev" parent 1: protocol ip prio 4 u32 match ip dsfield 0x28 0xfc flowid 1:13
	$TC filter add dev "$dev" parent 1: protocol ip prio 5 u32 match ip dsfield 0x40 0xfc flowid 1:14
	$TC filter add dev "$dev" parent 1: protocol ip prio 6 u32 match ip dsfield 0x00 0xfc flowid 1:15
}

# mgmt: VLAN 10, 10.42.0.11
llmcluster_qos vlan10
# inference: VLAN 20, 10.42.1.11
llmcluster_qos vlan20
# storage_public: VLAN 30, 10.42.2.11
llmcluster_qos vlan30
# rdma: VLAN 40, 10.42.4.11
llmcluster_qos vlan40
