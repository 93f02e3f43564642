#!/bin/sh
# llmcluster host QoS for gpu-01 (pool gpu): tc htb, one class per QoS class.
# Generated from the IP and QoS plans: do not edit, change the spec instead.
# Link speed 200gbit; rates are the classes' bandwidth shares, every class may borrow up to the link.
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
	$TC class replace dev "$dev" parent 1: classid 1:1 htb rate 200gbit ceil 200gbit burst 2500000b cburst 2500000b quantum 200000
	# roce: DSCP 26 (af31) -> PCP 3, queue 3, 50 %, lossless
	$TC class replace dev "$dev" parent 1:1 classid 1:10 htb rate 100gbit ceil 200gbit prio 4 burst 2500000b cburst 2500000b quantum 200000
	# cnp: DSCP 48 (cs6) -> PCP 6, queue 6, 0 %, strict priority
	$TC class replace dev "$dev" parent 1:1 classid 1:11 htb rate 200mbit ceil 200gbit prio 0 burst 2500000b cburst 2500000b quantum 200000
	# inference: DSCP 34 (af41) -> PCP 4, queue 4, 20 %
	$TC class replace dev "$dev" parent 1:1 classid 1:12 htb rate 40gbit ceil 200gbit prio 3 burst 2500000b cburst 2500000b quantum 200000
	# storage: DSCP 10 (af11) -> PCP 1, queue 1, 20 %
	$TC class replace dev "$dev" parent 1:1 classid 1:13 htb rate 40gbit ceil 200gbit prio 6 burst 2500000b cburst 2500000b quantum 200000
	# mgmt: DSCP 16 (cs2) -> PCP 2, queue 2, 5 %
	$TC class replace dev "$dev" parent 1:1 classid 1:14 htb rate 10gbit ceil 200gbit prio 5 burst 2500000b cburst 2500000b quantum 200000
	# default: DSCP 0 (cs0) -> PCP 0, queue 0, 5 %
	$TC class replace dev "$dev" parent 1:1 classid 1:15 htb rate 10gbit ceil 200gbit prio 7 burst 2500000b cburst 2500000b quantum 200000
	$TC filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip dsfield 0x68 0xfc flowid 1:10
	$TC filter add dev "$dev" parent 1: protocol ip prio 2 u32 match ip dsfield 0xc0 0xfc flowid 1:11
	$TC filter add dev "$dev" parent 1: protocol ip prio 3 u32 match ip dsfield 0x88 0xfc flowid 1:12
	$TC filter add dev "$dev" parent 1: protocol ip prio 4 u32 match ip dsfield 0x28 0xfc flowid 1:13
	$TC filter add dev "$dev" parent 1: protocol ip prio 5 u32 match ip dsfield 0x40 0xfc flowid 1:14
	$TC filter add dev "$dev" parent 1: protocol ip prio 6 u32 match ip dsfield 0x00 0xfc flowid 1:15
}

# mgmt: VLAN 110, 10.64.0.11
llmcluster_qos vlan110
# inference: VLAN 120, 10.64.16.11
llmcluster_qos vlan120
# storage_public: VLAN 130, 10.64.24.11
llmcluster_qos vlan130
# rdma: VLAN 140, 10.64.40.11
llmcluster_qos vlan140
