"""A minimal external network peer for the qesif orchestrator, written from docs/protocol.md alone.

    qesif run scenarios/smoke.yaml --peer
        'python docs/examples/external_peer.py {endpoint} {schedule} {topology}'   (one line)

It replays the run's schedule over a deliberately simple network, to show the protocol, not to model a
radio: each device works through its messages one at a time, in generation order, with no loss and an
unbounded queue. A session start occupies the device for its handshake (both CPU times plus both flights'
airtime); a message for its device CPU (AEAD fixed + per 16-byte block), its airtime at 250 kbit/s
(payload + the grant's extra bytes + 25 header bytes), the gateway's CPU and 1 ms of backhaul. A device
starts a new session in each round in which it has messages and is not still busy with earlier ones.
Energy per device and round: 52.2 mW while transmitting, 24 mW for CPU time, 60 uW asleep otherwise.
Needs pyzmq only (pip install pyzmq); no qesif imports.
"""

import csv
import json
import math
import sys

import zmq

BITRATE = 250e3  # bit/s
HEADER_BYTES = 25  # MAC + 6LoWPAN + UDP + application headers of a message
BACKHAUL_S = 1e-3
P_TX, P_CPU, P_SLEEP = 0.0522, 0.024, 60e-6  # W
TIMEOUT_MS = 60_000


class Orchestrator:
    """One request, one reply over a DEALER socket (an empty delimiter frame, then the message)."""

    def __init__(self, endpoint):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def call(self, kind, body, expected):
        self.socket.send_multipart([b"", json.dumps({"v": 1, "type": kind, "body": body}).encode()])
        if not self.socket.poll(TIMEOUT_MS):
            sys.exit(f"no reply to {kind} within {TIMEOUT_MS / 1000} s")
        reply = json.loads(self.socket.recv_multipart()[-1])
        if reply["type"] != expected:
            sys.exit(f"{kind}: got {reply['type']} {reply['body']}")
        return reply["body"]


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main(endpoint, schedule_path, topology_path):
    gateway_of = [int(row["gateway"]) for row in read_rows(topology_path)]
    devices, gateways = len(gateway_of), max(gateway_of) + 1
    orch = Orchestrator(endpoint)
    welcome = orch.call(
        "HELLO", {"version": 1, "peer": "example-peer", "devices": devices, "gateways": gateways}, "WELCOME"
    )
    rounds, duration = welcome["rounds"], welcome["round_duration_s"]
    by_round = [[] for _ in range(rounds)]  # (device, time, payload, record) in file (time) order
    for row in read_rows(schedule_path):
        time = float(row["time"])
        message = (int(row["device"]), time, int(row["payload"]), int(row["record"]))
        by_round[math.floor(time / duration)].append(message)
    free_at = [0.0] * devices  # when each device has finished everything it started
    grant_of = [None] * devices  # each device's current session costs
    pending = []  # (delivery time, generation time, payload) not yet counted as delivered
    sent_total = delivered_total = 0
    for r in range(rounds):
        start, end = r * duration, (r + 1) * duration
        messages = by_round[r]
        first = {}
        for device, time, _, _ in messages:
            first.setdefault(device, time)
        starting = sorted(d for d in first if free_at[d] <= start)
        grant = orch.call(
            "KEY_REQUEST",
            {"round": r, "device": starting, "gateway": [gateway_of[d] for d in starting],
             "time": [first[d] for d in starting]},
            "KEY_GRANT",
        )  # fmt: skip
        energy = {d: 0.0 for d in first}
        frames = 0
        for i, device in enumerate(grant["device"]):
            costs = {name: column[i] for name, column in grant.items() if name not in ("round", "device")}
            grant_of[device] = costs
            flights = costs["handshake_up_bytes"] + costs["handshake_down_bytes"]
            airtime = flights * 8 / BITRATE
            cpu = costs["handshake_device_s"]
            free_at[device] = (
                max(free_at[device], first[device]) + cpu + costs["handshake_gateway_s"] + airtime
            )
            energy[device] += P_TX * airtime + P_CPU * cpu
            frames += (costs["handshake_up_bytes"] > 0) + (costs["handshake_down_bytes"] > 0)
        for device, time, payload, _ in sorted(messages):
            costs = grant_of[device]
            cpu = costs["cipher_device_s_fixed"] + costs["cipher_device_s_per_block"] * -(-payload // 16)
            airtime = (payload + costs["extra_bytes"] + HEADER_BYTES) * 8 / BITRATE
            gateway_cpu = costs["cipher_gateway_s_fixed"] + costs["cipher_gateway_s_per_byte"] * payload
            begin = max(time, free_at[device])
            free_at[device] = begin + cpu + airtime + gateway_cpu + BACKHAUL_S
            pending.append((free_at[device], time, payload))
            energy[device] += P_TX * airtime + P_CPU * cpu
            frames += 1
        sent_total += len(messages)
        done = [m for m in pending if m[0] <= end]
        pending = [m for m in pending if m[0] > end]
        delivered_total += len(done)
        carried = {}  # record -> gateway of the first message carrying it in the round
        for device, _, _, record in messages:
            carried.setdefault(record, gateway_of[device])
        sessions = sorted(energy)
        telemetry = {
            "round": r, "messages_sent": len(messages), "messages_delivered": len(done), "messages_lost": 0,
            "queue_drops": 0, "in_flight": sent_total - delivered_total,
            "payload_bytes_delivered": sum(m[2] for m in done),
            "latency_s": [delivery - generated for delivery, generated, _ in done],
            "session_device": sessions,
            "session_energy_j": [energy[d] + P_SLEEP * duration for d in sessions],
            "record": list(carried), "record_gateway": list(carried.values()),
            "frames": frames, "mac_drops": 0, "retransmissions": 0,
        }  # fmt: skip
        orch.call("TELEMETRY", telemetry, "VERDICT")  # this example does not react to the Q-IDS verdict
    orch.call("BYE", {"reason": "done"}, "BYE")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: external_peer.py ENDPOINT SCHEDULE_CSV TOPOLOGY_CSV")
    main(*sys.argv[1:])
