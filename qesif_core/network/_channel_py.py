"""The access channels of the network model, event by event: IEEE 802.15.4 unslotted CSMA/CA or 802.11 DCF,
and the device exchanges (requests, responses, timers, device queues) on top of them.

One source, two builds: imported as it is, this is the pure-Python twin; ``_channel.pyx`` includes it and
Cython compiles it (the ``cython`` annotations type it there; in Python they do nothing). Both perform the
same double operations in the same order and draw from the same integer random stream, so they agree bit
for bit (tested).

Each PAN (an 802.15.4 PAN or an 802.11 cell: "PAN" below) is independent: its devices and its gateway are
stations that hear each other, on a channel of their own. A PAN runs as a discrete-event simulation on an
indexed heap of its stations' next events, ordered by (time, priority, slot): the priority orders events
of the same instant as a positive propagation delay would (a clear channel assessment at t does not yet see
a transmission starting at t and still sees one ending at t), the slot (station and kind, fixed) breaks the
remaining ties, so the order does not depend on when an event was scheduled and a run cut at any horizon
resumes exactly.

IEEE 802.15.4 (Std 802.15.4-2006 7.5.1.4, as INET's Ieee802154Mac): for each frame NB = 0; a backoff of
U[0, 2^BE - 1] unit backoff periods, BE = min(macMinBE + NB, macMaxBE); a CCA of 8 symbols whose result
is the channel's state at its end; busy: NB + 1, a channel access failure (the frame is dropped) when NB >
macMaxCSMABackoffs, else another backoff; idle: the radio turns around (aTurnaroundTime) and transmits.
The receiver of an intact frame answers with an ACK after aTurnaroundTime without sensing the channel
(a station that was backing off resumes afterwards with its NB); the sender waits macAckWaitDuration for
it, then retransmits (NB = 0) up to macMaxFrameRetries times and drops the frame. 802.11 DCF (Std
802.11-2016 10.3, as INET's Contention and NonQosRecoveryProcedure): a backoff of U[0, CW] slots after
DIFS (EIFS after a corrupted reception), counted down only while the medium is idle and frozen while it is
busy (physical carrier sense, and the NAV of an intact data frame up to its ACK); a station that finds the
medium idle long enough goes at once (INET's backoff optimisation); the ACK follows after SIFS; a missing
ACK doubles CW (up to CWmax), dot11ShortRetryLimit attempts in all.

A frame is received when no other transmission overlaps it (no capture) and its receiver is not
transmitting (half duplex: from the turnaround on), and bit errors spare it. A packet is a request
(device -> gateway, or a gateway flight) or a response (gateway -> device); it is split into fragments
that the sender's MAC sends one after the other, and it arrives when every fragment did. The gateway's MAC
serves its packets in order of arrival (one FIFO per gateway, ``ring_capacity`` packets); a device's MAC
holds the packet it sends and at most one more.

Above the MAC, each device works through its jobs one at a time (``dev_cursor`` .. ``dev_hi``): a
request and, when ``has_resp``, a response the gateway queues ``resp_delay`` after the request arrived. A
request is sent again when the attempt's timer (``timeouts[timeout_base + attempt]`` from the attempt's
start) fires, up to ``n_att`` attempts, then given up; a job without response ends when its request is
through its sender's MAC. Messages (``droppable``) that arrive while ``queue_limit`` messages already wait
in the device's queue are dropped. Events at ``horizon`` or later stay pending in the state arrays (``st``)
for the next call.
"""

import math

import cython
import numpy as np

# Job phases.
NOT_STARTED = cython.declare(cython.longlong, 0)
REQUEST = cython.declare(cython.longlong, 1)  # request under way
RESPONSE = cython.declare(cython.longlong, 2)  # request through, waiting for the response
DONE = cython.declare(cython.longlong, 3)
QUEUE_DROPPED = cython.declare(cython.longlong, 4)

# Station MAC states.
S_IDLE = cython.declare(cython.longlong, 0)
S_BACKOFF = cython.declare(cython.longlong, 1)  # 802.15.4: CCA ends at st_t; DCF: transmits at st_t
S_DEFER = cython.declare(cython.longlong, 2)  # DCF: backoff frozen, medium busy
S_TURN = cython.declare(cython.longlong, 3)  # 802.15.4: RX -> TX turnaround, transmits at st_t
S_AIR = cython.declare(cython.longlong, 4)  # data frame on air until st_t
S_WAITACK = cython.declare(cython.longlong, 5)  # waiting for the ACK (timeout at st_t; inf once it started)
S_SIFS = cython.declare(cython.longlong, 6)  # about to acknowledge a frame at st_t
S_ACKAIR = cython.declare(cython.longlong, 7)  # ACK on air until st_t

# Packet kinds.
PK_UP = cython.declare(cython.longlong, 0)  # device request to the gateway
PK_RESP = cython.declare(cython.longlong, 1)  # gateway response to a device

# Device application events.
A_NONE = cython.declare(cython.longlong, 0)
A_START = cython.declare(cython.longlong, 1)
A_TIMER = cython.declare(cython.longlong, 2)

# Access parameter vectors (``Ieee802154.kernel_params`` / ``Wifi80211.kernel_params``).
KIND_802154 = cython.declare(cython.longlong, 0)
KIND_DCF = cython.declare(cython.longlong, 1)
# acc_i
I_KIND = cython.declare(cython.longlong, 0)
I_MIN_BE = cython.declare(cython.longlong, 1)  # DCF: CWmin
I_MAX_BE = cython.declare(cython.longlong, 2)  # DCF: CWmax
I_MAX_CSMA = cython.declare(cython.longlong, 3)
I_MAX_RETRIES = cython.declare(cython.longlong, 4)  # 802.15.4: macMaxFrameRetries; DCF: attempts
I_ROOM = cython.declare(cython.longlong, 5)  # largest packet sent in one frame
I_FIRST_CAP = cython.declare(cython.longlong, 6)
I_NEXT_CAP = cython.declare(cython.longlong, 7)
I_FIRST_HDR = cython.declare(cython.longlong, 8)
I_NEXT_HDR = cython.declare(cython.longlong, 9)
I_MAC_OVH = cython.declare(cython.longlong, 10)
I_PHY_BYTES = cython.declare(cython.longlong, 11)  # 802.15.4: PHY bytes per frame; DCF: data bits per symbol
I_RING = cython.declare(cython.longlong, 12)
N_ACC_I = 13
# acc_f
F_BYTE_S = cython.declare(cython.longlong, 0)  # 802.15.4: seconds per byte
F_UNIT = cython.declare(cython.longlong, 1)  # 802.15.4: aUnitBackoffPeriod; DCF: slot
F_CCA = cython.declare(cython.longlong, 2)
F_TURN = cython.declare(cython.longlong, 3)  # 802.15.4: aTurnaroundTime (also before an ACK); DCF: SIFS
F_ACK_WAIT = cython.declare(cython.longlong, 4)  # 802.15.4: macAckWaitDuration; DCF: ACKTimeout
F_ACK_AIR = cython.declare(cython.longlong, 5)
F_BER = cython.declare(cython.longlong, 6)
F_ACK_ERR = cython.declare(cython.longlong, 7)  # probability that bit errors corrupt an ACK
F_DIFS = cython.declare(cython.longlong, 8)
F_EIFS = cython.declare(cython.longlong, 9)
F_PREAMBLE = cython.declare(cython.longlong, 10)  # DCF: preamble + SIGNAL
F_SYMBOL = cython.declare(cython.longlong, 11)
F_SIG_EXT = cython.declare(cython.longlong, 12)
N_ACC_F = 13

INF = cython.declare(cython.double, math.inf)
MASK64 = cython.declare(cython.ulonglong, 0xFFFFFFFFFFFFFFFF)
GOLDEN = cython.declare(cython.ulonglong, 0x9E3779B97F4A7C15)
MIX1 = cython.declare(cython.ulonglong, 0xBF58476D1CE4E5B9)
MIX2 = cython.declare(cython.ulonglong, 0x94D049BB133111EB)
TWO_M53 = cython.declare(cython.double, 1.0 / 9007199254740992.0)

#: Persistent per-station state (``st``): name -> dtype ("f" float64, "i" int64). Stations are the devices
#: (by device index) and then the gateways (n_devices + pan).
STATION_FIELDS = {
    "state": "i",
    "t": "f",  # time of the station's next MAC event
    "t0": "f",  # start of the current backoff, transmission or ACK wait (energy)
    "nb": "i",  # 802.15.4 NB; DCF: backoff slots left
    "cw": "i",  # DCF contention window
    "retry": "i",  # failed attempts of the current frame
    "grant": "f",  # DCF: last channel access
    "eifs_end": "f",  # DCF: EIFS applies until then
    "resume": "i",  # backing off when an ACK duty interrupted it
    "ack_to": "i",  # station being acknowledged
    "corrupt": "i",  # the frame on air is lost
    "has": "i",  # the MAC holds a packet
    "pkind": "i",
    "pdev": "i",  # device the packet belongs to
    "pseq": "i",  # its job's sequence number on that device
    "pbytes": "i",
    "frag": "i",
    "nfrag": "i",
    "pok": "i",  # every fragment so far reached the receiver
    "fok": "i",  # the current fragment did
}
#: Persistent per-device state (application side and the device MAC's waiting packet).
DEVICE_FIELDS = {
    "app_kind": "i",
    "app_t": "f",
    "gw_t": "f",  # when the gateway queues the response of the device's request (inf: none pending)
    "gw_seq": "i",
    "gw_bytes": "i",
    "seq": "i",  # jobs begun so far
    "pend": "i",  # a packet waits behind the one the MAC holds
    "pend_kind": "i",
    "pend_seq": "i",
    "pend_bytes": "i",
}
#: Persistent per-PAN state.
PAN_FIELDS = {
    "air": "i",  # transmissions on air
    "nav": "f",  # DCF: NAV of the last intact data frame
    "med_t": "f",  # DCF: pending medium-idle check
    "med_change": "f",  # DCF: last change of the medium's state
    "ring_head": "i",
    "ring_len": "i",
}
RING_FIELDS = ("ring_kind", "ring_dev", "ring_seq", "ring_bytes")


def fragment_sizes(packet_bytes: int, acc_i) -> list:
    """MPDU sizes of the frames a packet of ``packet_bytes`` is sent in (the kernel's own arithmetic)."""
    n = _n_fragments(packet_bytes, acc_i[I_ROOM], acc_i[I_FIRST_CAP], acc_i[I_NEXT_CAP])
    return [
        _fragment_mpdu(
            packet_bytes,
            k,
            n,
            acc_i[I_FIRST_CAP],
            acc_i[I_NEXT_CAP],
            acc_i[I_FIRST_HDR],
            acc_i[I_NEXT_HDR],
            acc_i[I_MAC_OVH],
        )
        for k in range(n)
    ]


@cython.cfunc
@cython.exceptval(check=False)
def _n_fragments(
    size: cython.longlong, room: cython.longlong, first_cap: cython.longlong, next_cap: cython.longlong
) -> cython.longlong:
    if size <= room:
        return 1
    return 1 + (size - first_cap + next_cap - 1) // next_cap


@cython.cfunc
@cython.exceptval(check=False)
def _fragment_mpdu(
    size: cython.longlong,
    k: cython.longlong,
    n: cython.longlong,
    first_cap: cython.longlong,
    next_cap: cython.longlong,
    first_hdr: cython.longlong,
    next_hdr: cython.longlong,
    mac_ovh: cython.longlong,
) -> cython.longlong:
    rest: cython.longlong
    if n == 1:
        return size + mac_ovh
    if k == 0:
        return first_cap + first_hdr + mac_ovh
    rest = size - first_cap - (k - 1) * next_cap
    if rest > next_cap:
        rest = next_cap
    return rest + next_hdr + mac_ovh


@cython.cclass
class _Pans:
    """The kernel's arrays and the PAN under simulation (see the module docstring)."""

    # topology and jobs
    pan_dev: cython.longlong[:]
    pan_lo: cython.longlong[:]
    cursor: cython.longlong[:]
    dev_hi: cython.longlong[:]
    dev_free: cython.double[:]
    arrival: cython.double[:]
    earliest: cython.double[:]
    pre_delay: cython.double[:]
    resp_delay: cython.double[:]
    post_delay: cython.double[:]
    n_att: cython.longlong[:]
    has_resp: cython.longlong[:]
    droppable: cython.longlong[:]
    req_bytes: cython.longlong[:]
    resp_bytes: cython.longlong[:]
    timeout_base: cython.longlong[:]
    phase: cython.longlong[:]
    attempt: cython.longlong[:]
    jseq: cython.longlong[:]
    attempt_start: cython.double[:]
    req_done: cython.double[:]
    arrived: cython.double[:]
    end: cython.double[:]
    acked: cython.longlong[:]
    decided: cython.longlong[:]
    listen: cython.double[:]
    timeouts: cython.double[:]
    # stations
    st_state: cython.longlong[:]
    st_t: cython.double[:]
    st_t0: cython.double[:]
    st_nb: cython.longlong[:]
    st_cw: cython.longlong[:]
    st_retry: cython.longlong[:]
    st_grant: cython.double[:]
    st_eifs_end: cython.double[:]
    st_resume: cython.longlong[:]
    st_ack_to: cython.longlong[:]
    st_corrupt: cython.longlong[:]
    st_has: cython.longlong[:]
    st_pkind: cython.longlong[:]
    st_pdev: cython.longlong[:]
    st_pseq: cython.longlong[:]
    st_pbytes: cython.longlong[:]
    st_frag: cython.longlong[:]
    st_nfrag: cython.longlong[:]
    st_pok: cython.longlong[:]
    st_fok: cython.longlong[:]
    # devices
    app_kind: cython.longlong[:]
    app_t: cython.double[:]
    gw_t: cython.double[:]
    gw_seq: cython.longlong[:]
    gw_bytes: cython.longlong[:]
    dev_seq: cython.longlong[:]
    pend: cython.longlong[:]
    pend_kind: cython.longlong[:]
    pend_seq: cython.longlong[:]
    pend_bytes: cython.longlong[:]
    # PANs
    air: cython.longlong[:]
    nav: cython.double[:]
    med_t: cython.double[:]
    med_change: cython.double[:]
    ring_head: cython.longlong[:]
    ring_len: cython.longlong[:]
    ring_kind: cython.longlong[:]
    ring_dev: cython.longlong[:]
    ring_seq: cython.longlong[:]
    ring_bytes: cython.longlong[:]
    rng: cython.ulonglong[:]
    # outputs
    en_tx: cython.double[:]
    en_rx: cython.double[:]
    en_idle: cython.double[:]
    frames: cython.longlong[:]
    drops: cython.longlong[:]
    ring_drops: cython.longlong[:]
    # scratch: the PAN's heap and per-device queue bookkeeping
    heap: cython.longlong[:]
    pos: cython.longlong[:]
    kt: cython.double[:]
    kp: cython.longlong[:]
    loc: cython.longlong[:]
    undecided: cython.longlong[:]
    waiting: cython.longlong[:]
    # parameters
    kind: cython.longlong
    min_be: cython.longlong
    max_be: cython.longlong
    max_csma: cython.longlong
    max_retries: cython.longlong
    room: cython.longlong
    first_cap: cython.longlong
    next_cap: cython.longlong
    first_hdr: cython.longlong
    next_hdr: cython.longlong
    mac_ovh: cython.longlong
    phy_bytes: cython.longlong
    ring_cap: cython.longlong
    byte_s: cython.double
    unit: cython.double
    cca: cython.double
    turn: cython.double
    ack_wait: cython.double
    ack_air: cython.double
    ber: cython.double
    ack_err: cython.double
    difs: cython.double
    eifs: cython.double
    preamble: cython.double
    symbol: cython.double
    sig_ext: cython.double
    queue_limit: cython.longlong
    horizon: cython.double
    n_devices: cython.longlong
    # the PAN under simulation
    p: cython.longlong
    lo: cython.longlong
    n: cython.longlong
    gw: cython.longlong
    n_slots: cython.longlong
    building: cython.bint
    z: cython.ulonglong

    def __init__(self, job, st, out, acc_f, acc_i, scratch) -> None:
        self.arrival, self.earliest = job["arrival"], job["earliest"]
        self.pre_delay, self.resp_delay = job["pre_delay"], job["resp_delay"]
        self.post_delay, self.n_att = job["post_delay"], job["n_att"]
        self.has_resp = job["has_resp"]
        self.droppable, self.req_bytes = job["droppable"], job["req_bytes"]
        self.resp_bytes, self.timeout_base = job["resp_bytes"], job["timeout_base"]
        self.phase, self.attempt, self.jseq = job["phase"], job["attempt"], job["seq"]
        self.attempt_start, self.req_done = job["attempt_start"], job["req_done"]
        self.arrived, self.end, self.acked = job["arrived"], job["end"], job["acked"]
        self.decided, self.listen = job["decided"], job["listen"]
        self.st_state, self.st_t, self.st_t0 = st["state"], st["t"], st["t0"]
        self.st_nb, self.st_cw, self.st_retry = st["nb"], st["cw"], st["retry"]
        self.st_grant, self.st_eifs_end = st["grant"], st["eifs_end"]
        self.st_resume, self.st_ack_to, self.st_corrupt = st["resume"], st["ack_to"], st["corrupt"]
        self.st_has, self.st_pkind, self.st_pdev = st["has"], st["pkind"], st["pdev"]
        self.st_pseq, self.st_pbytes = st["pseq"], st["pbytes"]
        self.st_frag, self.st_nfrag, self.st_pok, self.st_fok = st["frag"], st["nfrag"], st["pok"], st["fok"]
        self.app_kind, self.app_t = st["app_kind"], st["app_t"]
        self.gw_t, self.gw_seq, self.gw_bytes = st["gw_t"], st["gw_seq"], st["gw_bytes"]
        self.dev_seq, self.pend = st["seq"], st["pend"]
        self.pend_kind, self.pend_seq, self.pend_bytes = st["pend_kind"], st["pend_seq"], st["pend_bytes"]
        self.air, self.nav, self.med_t, self.med_change = st["air"], st["nav"], st["med_t"], st["med_change"]
        self.ring_head, self.ring_len = st["ring_head"], st["ring_len"]
        self.ring_kind, self.ring_dev = st["ring_kind"], st["ring_dev"]
        self.ring_seq, self.ring_bytes = st["ring_seq"], st["ring_bytes"]
        self.rng = st["rng"]
        self.en_tx, self.en_rx, self.en_idle = out["en_tx"], out["en_rx"], out["en_idle"]
        self.frames, self.drops, self.ring_drops = out["frames"], out["drops"], out["ring_drops"]
        self.heap, self.pos, self.kt, self.kp = scratch["heap"], scratch["pos"], scratch["kt"], scratch["kp"]
        self.loc, self.undecided, self.waiting = scratch["loc"], scratch["undecided"], scratch["waiting"]
        ints = [int(v) for v in acc_i]
        floats = [float(v) for v in acc_f]
        self.kind, self.min_be, self.max_be = ints[I_KIND], ints[I_MIN_BE], ints[I_MAX_BE]
        self.max_csma, self.max_retries = ints[I_MAX_CSMA], ints[I_MAX_RETRIES]
        self.room, self.first_cap, self.next_cap = ints[I_ROOM], ints[I_FIRST_CAP], ints[I_NEXT_CAP]
        self.first_hdr, self.next_hdr = ints[I_FIRST_HDR], ints[I_NEXT_HDR]
        self.mac_ovh, self.phy_bytes, self.ring_cap = ints[I_MAC_OVH], ints[I_PHY_BYTES], ints[I_RING]
        self.byte_s, self.unit, self.cca = floats[F_BYTE_S], floats[F_UNIT], floats[F_CCA]
        self.turn, self.ack_wait, self.ack_air = floats[F_TURN], floats[F_ACK_WAIT], floats[F_ACK_AIR]
        self.ber, self.ack_err = floats[F_BER], floats[F_ACK_ERR]
        self.difs, self.eifs = floats[F_DIFS], floats[F_EIFS]
        self.preamble, self.symbol, self.sig_ext = floats[F_PREAMBLE], floats[F_SYMBOL], floats[F_SIG_EXT]
        self.building = False

    # ---- random numbers: splitmix64, one stream per PAN ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def uniform(self) -> cython.double:
        z: cython.ulonglong
        self.z = (self.z + GOLDEN) & MASK64
        z = self.z
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        z = z ^ (z >> 31)
        return (z >> 11) * TWO_M53

    @cython.cfunc
    @cython.exceptval(check=False)
    def below(self, m: cython.longlong) -> cython.longlong:
        """A uniform integer in [0, m)."""
        return cython.cast(cython.longlong, self.uniform() * m)

    # ---- the PAN's event heap: slots keyed by (time, priority, slot) ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def before(self, a: cython.longlong, b: cython.longlong) -> cython.bint:
        if self.kt[a] != self.kt[b]:
            return self.kt[a] < self.kt[b]
        if self.kp[a] != self.kp[b]:
            return self.kp[a] < self.kp[b]
        return a < b

    @cython.cfunc
    @cython.exceptval(check=False)
    def sift_down(self, i: cython.longlong) -> cython.longlong:
        """Move the slot at heap position ``i`` down to where its key belongs; returns its position."""
        slot: cython.longlong = self.heap[i]
        child: cython.longlong
        other: cython.longlong
        while True:
            child = 2 * i + 1
            if child >= self.n_slots:
                break
            if child + 1 < self.n_slots and self.before(self.heap[child + 1], self.heap[child]):
                child += 1
            other = self.heap[child]
            if not self.before(other, slot):
                break
            self.heap[i] = other
            self.pos[other] = i
            i = child
        self.heap[i] = slot
        self.pos[slot] = i
        return i

    @cython.cfunc
    @cython.exceptval(check=False)
    def sift(self, slot: cython.longlong) -> cython.void:
        """Restore the heap after ``slot``'s key changed."""
        i: cython.longlong = self.pos[slot]
        parent: cython.longlong
        other: cython.longlong
        while i > 0:
            parent = (i - 1) >> 1
            other = self.heap[parent]
            if not self.before(slot, other):
                break
            self.heap[i] = other
            self.pos[other] = i
            i = parent
        self.heap[i] = slot
        self.pos[slot] = i
        self.sift_down(i)

    @cython.cfunc
    @cython.exceptval(check=False)
    def key(self, slot: cython.longlong, t: cython.double, prio: cython.longlong) -> cython.void:
        self.kt[slot] = t
        self.kp[slot] = prio
        if not self.building:
            self.sift(slot)

    @cython.cfunc
    @cython.exceptval(check=False)
    def mac_prio(self, state: cython.longlong) -> cython.longlong:
        if state == S_BACKOFF:
            return 0 if self.kind == KIND_802154 else 2  # a CCA sees the instant before; DCF transmits
        if state == S_AIR or state == S_ACKAIR:
            return 1
        if state == S_TURN or state == S_SIFS:
            return 2
        return 3

    @cython.cfunc
    @cython.exceptval(check=False)
    def mac_slot(self, s: cython.longlong) -> cython.longlong:
        if s < self.n_devices:
            return self.loc[s]
        return 3 * self.n

    @cython.cfunc
    @cython.exceptval(check=False)
    def set_mac(self, s: cython.longlong, state: cython.longlong, t: cython.double) -> cython.void:
        self.st_state[s] = state
        self.st_t[s] = t
        self.key(self.mac_slot(s), t, self.mac_prio(state))

    @cython.cfunc
    @cython.exceptval(check=False)
    def set_app(self, d: cython.longlong, kind: cython.longlong, t: cython.double) -> cython.void:
        self.app_kind[d] = kind
        self.app_t[d] = t
        self.key(self.n + self.loc[d], t, 3)

    @cython.cfunc
    @cython.exceptval(check=False)
    def set_gw(self, d: cython.longlong, t: cython.double) -> cython.void:
        self.gw_t[d] = t
        self.key(2 * self.n + self.loc[d], t, 3)

    @cython.cfunc
    @cython.exceptval(check=False)
    def set_medium(self, t: cython.double) -> cython.void:
        self.med_t[self.p] = t
        self.key(3 * self.n + 1, t, 1)

    # ---- frames ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def airtime(self, mpdu: cython.longlong) -> cython.double:
        bits: cython.longlong
        if self.kind == KIND_802154:
            return (mpdu + self.phy_bytes) * self.byte_s
        bits = 22 + 8 * mpdu  # SERVICE 16 + data + tail 6, in whole OFDM symbols
        return self.preamble + ((bits + self.phy_bytes - 1) // self.phy_bytes) * self.symbol + self.sig_ext

    @cython.cfunc
    @cython.exceptval(check=False)
    def frame_error(self, mpdu: cython.longlong) -> cython.double:
        bits: cython.double = 8.0 * mpdu
        if self.kind == KIND_802154:
            bits = 8.0 * (mpdu + self.phy_bytes)
        return 1.0 - (1.0 - self.ber) ** bits

    @cython.cfunc
    @cython.exceptval(check=False)
    def station(self, k: cython.longlong) -> cython.longlong:
        """Station of the PAN's k-th member (its devices, then its gateway)."""
        if k < self.n:
            return self.pan_dev[self.lo + k]
        return self.gw

    @cython.cfunc
    @cython.exceptval(check=False)
    def deaf(self, s: cython.longlong) -> cython.bint:
        state: cython.longlong = self.st_state[s]
        return state == S_TURN or state == S_AIR or state == S_SIFS or state == S_ACKAIR

    @cython.cfunc
    @cython.exceptval(check=False)
    def medium_idle(self, t: cython.double) -> cython.bint:
        return self.air[self.p] == 0 and self.nav[self.p] <= t

    @cython.cfunc
    @cython.exceptval(check=False)
    def start_transmission(self, s: cython.longlong, dest: cython.longlong, t: cython.double) -> cython.void:
        """A frame of ``s`` goes on air at ``t``: overlaps corrupt every frame involved."""
        k: cython.longlong
        q: cython.longlong
        was_idle: cython.bint = self.medium_idle(t)
        if self.deaf(dest):
            self.st_corrupt[s] = 1
        if self.air[self.p] > 0:
            self.st_corrupt[s] = 1
            for k in range(self.n + 1):
                q = self.station(k)
                if self.st_state[q] == S_AIR or self.st_state[q] == S_ACKAIR:
                    self.st_corrupt[q] = 1
        self.air[self.p] += 1
        if self.kind == KIND_DCF and was_idle:
            self.medium_busy(t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def end_transmission(self, t: cython.double) -> cython.void:
        self.air[self.p] -= 1
        if self.kind == KIND_DCF and self.air[self.p] == 0:
            if self.nav[self.p] > t:
                self.set_medium(self.nav[self.p])
            else:
                self.medium_idle_at(t)

    # ---- 802.11 DCF contention ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def ifs(self, s: cython.longlong, t: cython.double) -> cython.double:
        if self.st_eifs_end[s] > t + self.difs:
            return self.eifs
        return self.difs

    @cython.cfunc
    @cython.exceptval(check=False)
    def medium_busy(self, t: cython.double) -> cython.void:
        """Freeze the backoffs of the stations contending (those due later than ``t``)."""
        k: cython.longlong
        q: cython.longlong
        x: cython.double
        left: cython.longlong
        self.med_change[self.p] = t
        for k in range(self.n + 1):
            q = self.station(k)
            if self.st_state[q] == S_BACKOFF and self.st_t[q] > t:
                x = (self.st_t[q] - t) / self.unit - 1e-9
                left = cython.cast(cython.longlong, x)
                if left < x:
                    left += 1
                if left < self.st_nb[q]:
                    self.st_nb[q] = left
                self.set_mac(q, S_DEFER, INF)

    @cython.cfunc
    @cython.exceptval(check=False)
    def medium_idle_at(self, t: cython.double) -> cython.void:
        """The medium became idle: the frozen backoffs count down again after the IFS."""
        k: cython.longlong
        q: cython.longlong
        self.med_change[self.p] = t
        for k in range(self.n + 1):
            q = self.station(k)
            if self.st_state[q] == S_DEFER:
                self.set_mac(q, S_BACKOFF, t + self.ifs(q, t) + self.st_nb[q] * self.unit)

    @cython.cfunc
    @cython.exceptval(check=False)
    def start_dcf(self, s: cython.longlong, t: cython.double) -> cython.void:
        wait: cython.double
        delta: cython.double
        self.st_nb[s] = self.below(self.st_cw[s] + 1)
        if self.medium_idle(t):
            wait = self.ifs(s, t) + self.st_nb[s] * self.unit
            delta = min(wait, t - self.med_change[self.p], t - self.st_grant[s])
            if delta > 0.0:
                wait -= delta
            self.set_mac(s, S_BACKOFF, t + wait)
        else:
            self.set_mac(s, S_DEFER, INF)

    # ---- 802.15.4 CSMA/CA ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def backoff(self, s: cython.longlong, t: cython.double) -> cython.void:
        be: cython.longlong = self.min_be + self.st_nb[s]
        if be > self.max_be:
            be = self.max_be
        self.st_t0[s] = t
        self.set_mac(s, S_BACKOFF, t + self.below(1 << be) * self.unit + self.cca)

    @cython.cfunc
    @cython.exceptval(check=False)
    def start_access(self, s: cython.longlong, t: cython.double) -> cython.void:
        """Channel access for the MAC's current frame, from scratch (NB = 0 / a fresh DCF backoff)."""
        if self.kind == KIND_DCF:
            self.start_dcf(s, t)
        else:
            self.st_nb[s] = 0
            self.backoff(s, t)

    # ---- MAC packets ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def load(
        self,
        s: cython.longlong,
        pkind: cython.longlong,
        d: cython.longlong,
        seq: cython.longlong,
        size: cython.longlong,
    ) -> cython.void:
        self.st_has[s] = 1
        self.st_pkind[s] = pkind
        self.st_pdev[s] = d
        self.st_pseq[s] = seq
        self.st_pbytes[s] = size
        self.st_frag[s] = 0
        self.st_nfrag[s] = _n_fragments(size, self.room, self.first_cap, self.next_cap)
        self.st_pok[s] = 1
        self.st_fok[s] = 0
        self.st_retry[s] = 0

    @cython.cfunc
    @cython.exceptval(check=False)
    def give_device(
        self,
        d: cython.longlong,
        pkind: cython.longlong,
        seq: cython.longlong,
        size: cython.longlong,
        t: cython.double,
    ) -> cython.void:
        """Hand a packet to the device's MAC (or behind the packet it holds)."""
        if self.st_has[d]:
            self.pend[d] = 1
            self.pend_kind[d] = pkind
            self.pend_seq[d] = seq
            self.pend_bytes[d] = size
            return
        self.load(d, pkind, d, seq, size)
        if self.st_state[d] == S_IDLE:
            self.start_access(d, t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def give_gateway(
        self,
        pkind: cython.longlong,
        d: cython.longlong,
        seq: cython.longlong,
        size: cython.longlong,
        t: cython.double,
    ) -> cython.void:
        """Queue a packet at the gateway's MAC (FIFO)."""
        i: cython.longlong
        base: cython.longlong = self.p * self.ring_cap
        if not self.st_has[self.gw]:
            self.load(self.gw, pkind, d, seq, size)
            if self.st_state[self.gw] == S_IDLE:
                self.start_access(self.gw, t)
            return
        if self.ring_len[self.p] == self.ring_cap:
            self.ring_drops[self.p] += 1
            return
        i = base + (self.ring_head[self.p] + self.ring_len[self.p]) % self.ring_cap
        self.ring_kind[i] = pkind
        self.ring_dev[i] = d
        self.ring_seq[i] = seq
        self.ring_bytes[i] = size
        self.ring_len[self.p] += 1

    @cython.cfunc
    @cython.exceptval(check=False)
    def load_next(self, s: cython.longlong, t: cython.double) -> cython.void:
        i: cython.longlong
        self.st_has[s] = 0
        if s < self.n_devices:
            if self.pend[s]:
                self.pend[s] = 0
                self.load(s, self.pend_kind[s], s, self.pend_seq[s], self.pend_bytes[s])
        elif self.ring_len[self.p] > 0:
            i = self.p * self.ring_cap + self.ring_head[self.p]
            self.ring_head[self.p] = (self.ring_head[self.p] + 1) % self.ring_cap
            self.ring_len[self.p] -= 1
            self.load(s, self.ring_kind[i], self.ring_dev[i], self.ring_seq[i], self.ring_bytes[i])
        if self.st_has[s]:
            self.start_access(s, t)
        else:
            self.set_mac(s, S_IDLE, INF)

    @cython.cfunc
    @cython.exceptval(check=False)
    def frame_through(self, s: cython.longlong, t: cython.double) -> cython.void:
        """The MAC is through with the current frame (acknowledged or dropped): next fragment or packet."""
        if not self.st_fok[s]:
            self.st_pok[s] = 0
        self.st_frag[s] += 1
        self.st_fok[s] = 0
        self.st_retry[s] = 0
        if self.st_frag[s] < self.st_nfrag[s]:
            self.start_access(s, t)
            return
        self.packet_through(s, t)
        self.load_next(s, t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def mac_failed(self, s: cython.longlong, t: cython.double) -> cython.void:
        """No ACK: retransmit, or drop the frame after the last retry."""
        self.st_retry[s] += 1
        if self.kind == KIND_DCF:
            if self.st_retry[s] >= self.max_retries:
                self.drops[self.p] += 1
                self.st_cw[s] = self.min_be
                self.frame_through(s, t)
            else:
                self.st_cw[s] = min(2 * self.st_cw[s] + 1, self.max_be)
                self.start_dcf(s, t)
        elif self.st_retry[s] > self.max_retries:
            self.drops[self.p] += 1
            self.frame_through(s, t)
        else:
            self.start_access(s, t)

    # ---- MAC events ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def mac_event(self, s: cython.longlong, t: cython.double) -> cython.void:
        state: cython.longlong = self.st_state[s]
        if state == S_BACKOFF:
            if self.kind == KIND_DCF:
                self.st_grant[s] = t
                self.transmit(s, t)
            else:
                self.clear_channel_assessment(s, t)
        elif state == S_TURN:
            self.transmit(s, t)
        elif state == S_AIR:
            self.data_end(s, t)
        elif state == S_WAITACK:
            self.en_rx[s] += t - self.st_t0[s]
            self.mac_failed(s, t)
        elif state == S_SIFS:
            self.ack_start(s, t)
        elif state == S_ACKAIR:
            self.ack_end(s, t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def clear_channel_assessment(self, s: cython.longlong, t: cython.double) -> cython.void:
        self.en_idle[s] += t - self.cca - self.st_t0[s]
        self.en_rx[s] += self.cca
        if self.air[self.p] == 0:
            self.en_idle[s] += self.turn
            self.set_mac(s, S_TURN, t + self.turn)
            return
        self.st_nb[s] += 1
        if self.st_nb[s] > self.max_csma:
            self.drops[self.p] += 1  # channel access failure
            self.frame_through(s, t)
        else:
            self.backoff(s, t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def dest(self, s: cython.longlong) -> cython.longlong:
        if s < self.n_devices:
            return self.gw
        return self.st_pdev[s]

    @cython.cfunc
    @cython.exceptval(check=False)
    def transmit(self, s: cython.longlong, t: cython.double) -> cython.void:
        mpdu: cython.longlong = _fragment_mpdu(
            self.st_pbytes[s],
            self.st_frag[s],
            self.st_nfrag[s],
            self.first_cap,
            self.next_cap,
            self.first_hdr,
            self.next_hdr,
            self.mac_ovh,
        )
        air: cython.double = self.airtime(mpdu)
        self.frames[self.p] += 1
        self.st_corrupt[s] = self.uniform() < self.frame_error(mpdu)
        self.start_transmission(s, self.dest(s), t)
        self.en_tx[s] += air
        self.st_t0[s] = t
        self.set_mac(s, S_AIR, t + air)

    @cython.cfunc
    @cython.exceptval(check=False)
    def data_end(self, s: cython.longlong, t: cython.double) -> cython.void:
        r: cython.longlong = self.dest(s)
        state: cython.longlong
        k: cython.longlong
        q: cython.longlong
        intact: cython.bint = not self.st_corrupt[s]
        if r < self.n_devices:
            self.en_rx[r] += t - self.st_t0[s]
        self.st_t0[s] = t
        self.set_mac(s, S_WAITACK, t + self.ack_wait)
        if self.kind == KIND_DCF:
            if intact:
                if t + self.turn + self.ack_air > self.nav[self.p]:
                    self.nav[self.p] = t + self.turn + self.ack_air
            else:
                for k in range(self.n + 1):
                    q = self.station(k)
                    if q != s and self.st_state[q] != S_AIR and self.st_state[q] != S_WAITACK:
                        self.st_eifs_end[q] = t + self.eifs
        if intact:
            if not self.st_fok[s]:
                self.st_fok[s] = 1
                if self.st_pok[s] and self.st_frag[s] == self.st_nfrag[s] - 1:
                    self.packet_arrived(s, t)
            state = self.st_state[r]
            if state != S_WAITACK:  # a station waiting for its own ACK does not acknowledge (INET)
                if state == S_BACKOFF or state == S_DEFER:
                    if state == S_BACKOFF and self.kind == KIND_802154:
                        self.en_idle[r] += t - self.st_t0[r]
                    self.st_resume[r] = 1
                self.st_ack_to[r] = s
                if r < self.n_devices:
                    self.en_idle[r] += self.turn
                self.set_mac(r, S_SIFS, t + self.turn)
        self.end_transmission(t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def ack_start(self, s: cython.longlong, t: cython.double) -> cython.void:
        q: cython.longlong = self.st_ack_to[s]
        self.st_corrupt[s] = self.uniform() < self.ack_err
        self.start_transmission(s, q, t)
        self.en_tx[s] += self.ack_air
        if self.st_state[q] == S_WAITACK:
            self.set_mac(q, S_WAITACK, INF)  # its ACK is arriving: the outcome comes at the ACK's end
        self.set_mac(s, S_ACKAIR, t + self.ack_air)

    @cython.cfunc
    @cython.exceptval(check=False)
    def ack_end(self, s: cython.longlong, t: cython.double) -> cython.void:
        q: cython.longlong = self.st_ack_to[s]
        self.st_ack_to[s] = -1
        if self.st_resume[s]:
            self.st_resume[s] = 0
            if self.kind == KIND_DCF:
                self.set_mac(s, S_DEFER, INF)
            else:
                self.backoff(s, t)  # the interrupted channel access goes on with its NB
        elif self.st_has[s]:
            self.start_access(s, t)
        else:
            self.set_mac(s, S_IDLE, INF)
        if self.st_state[q] == S_WAITACK and self.st_t[q] == INF:
            self.en_rx[q] += t - self.st_t0[q]
            if self.st_corrupt[s]:
                self.mac_failed(q, t)
            else:
                if self.kind == KIND_DCF:
                    self.st_cw[q] = self.min_be
                self.frame_through(q, t)
        self.end_transmission(t)

    # ---- devices: queue, jobs, exchanges ----

    @cython.cfunc
    @cython.exceptval(check=False)
    def decide(self, d: cython.longlong, t: cython.double) -> cython.longlong:
        """Queue or drop the device's arrivals before ``t`` (its queue has not moved since they came)."""
        hi: cython.longlong = self.dev_hi[d]
        u: cython.longlong = self.undecided[d]
        while u < hi and self.arrival[u] < t:
            if self.droppable[u]:
                if self.waiting[d] >= self.queue_limit:
                    self.phase[u] = QUEUE_DROPPED
                else:
                    self.waiting[d] += 1
            self.decided[u] = 1
            u += 1
        self.undecided[d] = u
        return u

    @cython.cfunc
    @cython.exceptval(check=False)
    def begin(self, d: cython.longlong, t_free: cython.double) -> cython.void:
        """The device is free at ``t_free``: decide the arrivals meanwhile, schedule its next job."""
        hi: cython.longlong = self.dev_hi[d]
        u: cython.longlong = self.decide(d, t_free)
        j: cython.longlong = self.cursor[d]
        s: cython.double
        while j < hi and self.phase[j] == QUEUE_DROPPED:
            j += 1
        self.cursor[d] = j
        if j == hi:
            self.set_app(d, A_NONE, INF)
            return
        if self.decided[j] == 0:
            self.decided[j] = 1
            u = j + 1
        elif self.droppable[j]:
            self.waiting[d] -= 1
        self.undecided[d] = u
        s = max(self.earliest[j], t_free + self.pre_delay[j])
        self.jseq[j] = self.dev_seq[d]
        self.dev_seq[d] += 1
        self.phase[j] = REQUEST
        self.attempt[j] = 0
        self.attempt_start[j] = s
        self.set_app(d, A_START, s)

    @cython.cfunc
    @cython.exceptval(check=False)
    def finish(self, d: cython.longlong, j: cython.longlong, t_end: cython.double) -> cython.void:
        self.end[j] = t_end
        self.phase[j] = DONE
        self.dev_free[d] = t_end
        self.cursor[d] = j + 1
        self.begin(d, t_end)

    @cython.cfunc
    @cython.exceptval(check=False)
    def current(self, d: cython.longlong, seq: cython.longlong) -> cython.longlong:
        """The device's job under way if it is the one numbered ``seq``, else -1."""
        j: cython.longlong = self.cursor[d]
        if j < self.dev_hi[d] and self.jseq[j] == seq:
            if self.phase[j] == REQUEST or self.phase[j] == RESPONSE:
                return j
        return -1

    @cython.cfunc
    @cython.exceptval(check=False)
    def send_request(self, d: cython.longlong, j: cython.longlong, t: cython.double) -> cython.void:
        if self.req_bytes[j] == 0:  # no frame of its own (a session start answered by a gateway flight)
            self.request_arrived(d, j, t)
            self.request_through(d, j, t, True)
        else:
            self.give_device(d, PK_UP, self.jseq[j], self.req_bytes[j], t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def request_arrived(self, d: cython.longlong, j: cython.longlong, t: cython.double) -> cython.void:
        if self.arrived[j] != self.arrived[j]:  # nan: first arrival
            self.arrived[j] = t
        if self.has_resp[j] and self.gw_t[d] == INF:
            self.gw_seq[d] = self.jseq[j]
            self.gw_bytes[d] = self.resp_bytes[j]
            self.set_gw(d, t + self.resp_delay[j])

    @cython.cfunc
    @cython.exceptval(check=False)
    def request_through(
        self, d: cython.longlong, j: cython.longlong, t: cython.double, whole: cython.bint
    ) -> cython.void:
        """The device's MAC is through with the request (``whole``: it arrived)."""
        if self.has_resp[j]:
            if self.phase[j] == REQUEST:
                self.phase[j] = RESPONSE
                self.req_done[j] = t
        elif whole:
            self.finish(d, j, t + self.post_delay[j])
        else:
            self.finish(d, j, t)

    @cython.cfunc
    @cython.exceptval(check=False)
    def packet_arrived(self, s: cython.longlong, t: cython.double) -> cython.void:
        """Every fragment of the packet of ``s`` reached its receiver (first time, at ``t``)."""
        d: cython.longlong = self.st_pdev[s]
        j: cython.longlong = self.current(d, self.st_pseq[s])
        if j < 0:
            return
        if self.st_pkind[s] == PK_UP:
            self.request_arrived(d, j, t)
        else:  # the response
            if self.phase[j] == RESPONSE:
                self.listen[j] += t - self.req_done[j]
            self.acked[j] = 1
            self.finish(d, j, t + self.post_delay[j])

    @cython.cfunc
    @cython.exceptval(check=False)
    def packet_through(self, s: cython.longlong, t: cython.double) -> cython.void:
        """The MAC of ``s`` is through with its packet (``st_pok``: it arrived whole)."""
        d: cython.longlong = self.st_pdev[s]
        j: cython.longlong = self.current(d, self.st_pseq[s])
        if j >= 0 and self.st_pkind[s] == PK_UP:
            self.request_through(d, j, t, self.st_pok[s] != 0)

    @cython.cfunc
    @cython.exceptval(check=False)
    def app_event(self, d: cython.longlong, t: cython.double) -> cython.void:
        j: cython.longlong = self.cursor[d]
        a: cython.longlong
        if self.app_kind[d] == A_START:
            if self.has_resp[j]:
                self.set_app(d, A_TIMER, self.attempt_start[j] + self.timeouts[self.timeout_base[j]])
            else:
                self.set_app(d, A_NONE, INF)
            self.send_request(d, j, t)
            return
        # the attempt's timer: no response yet
        if self.phase[j] == RESPONSE:
            self.listen[j] += t - self.req_done[j]
        a = self.attempt[j] + 1
        if a < self.n_att[j]:
            self.attempt[j] = a
            self.phase[j] = REQUEST
            self.attempt_start[j] = t
            self.set_app(d, A_TIMER, t + self.timeouts[self.timeout_base[j] + a])
            self.send_request(d, j, t)
        else:
            self.finish(d, j, t)  # given up

    # ---- one PAN ----

    @cython.ccall
    def run_pan(self, p: cython.longlong) -> cython.void:
        k: cython.longlong
        d: cython.longlong
        u: cython.longlong
        j: cython.longlong
        hi: cython.longlong
        slot: cython.longlong
        t: cython.double
        self.p = p
        self.lo = self.pan_lo[p]
        self.n = self.pan_lo[p + 1] - self.lo
        self.gw = self.n_devices + p
        self.n_slots = 3 * self.n + 2
        self.z = self.rng[p]
        if not cython.compiled:
            self.z = int(self.z)
        self.building = True
        for k in range(self.n):
            d = self.pan_dev[self.lo + k]
            self.loc[d] = k
        for k in range(self.n):
            d = self.pan_dev[self.lo + k]
            j = self.cursor[d]
            hi = self.dev_hi[d]
            u = j
            self.waiting[d] = 0
            while u < hi and self.decided[u]:
                if self.droppable[u] and self.phase[u] == NOT_STARTED:
                    self.waiting[d] += 1
                u += 1
            self.undecided[d] = u
            if not (j < hi and (self.phase[j] == REQUEST or self.phase[j] == RESPONSE)):
                self.begin(d, self.dev_free[d])
            self.key(k, self.st_t[d], self.mac_prio(self.st_state[d]))
            self.key(self.n + k, self.app_t[d], 3)
            self.key(2 * self.n + k, self.gw_t[d], 3)
        self.key(3 * self.n, self.st_t[self.gw], self.mac_prio(self.st_state[self.gw]))
        self.key(3 * self.n + 1, self.med_t[p], 1)
        self.building = False
        for k in range(self.n_slots):
            self.heap[k] = k
            self.pos[k] = k
        for k in range(self.n_slots // 2 - 1, -1, -1):
            self.sift_down(k)
        while True:
            slot = self.heap[0]
            t = self.kt[slot]
            if t >= self.horizon:
                break
            if slot < self.n:
                self.mac_event(self.pan_dev[self.lo + slot], t)
            elif slot < 2 * self.n:
                self.app_event(self.pan_dev[self.lo + slot - self.n], t)
            elif slot < 3 * self.n:
                d = self.pan_dev[self.lo + slot - 2 * self.n]
                self.set_gw(d, INF)
                self.give_gateway(PK_RESP, d, self.gw_seq[d], self.gw_bytes[d], t)
            elif slot == 3 * self.n:
                self.mac_event(self.gw, t)
            else:
                self.set_medium(INF)
                if self.medium_idle(t):
                    self.medium_idle_at(t)
        for k in range(self.n):
            d = self.pan_dev[self.lo + k]
            self.decide(d, self.horizon)
        self.rng[p] = self.z


def run_pans(
    pan_dev,
    pan_lo,
    dev_cursor,
    dev_hi,
    dev_free,
    job,
    timeouts,
    st,
    out,
    acc_f,
    acc_i,
    queue_limit: int,
    horizon: float,
) -> None:
    """Run every PAN's events before ``horizon``; all arrays are updated in place.

    ``pan_dev``: device indices grouped by PAN, PAN p's at ``pan_lo[p]:pan_lo[p + 1]``; ``dev_cursor`` /
    ``dev_hi`` (per device): its jobs in the job table (``job``: float64 and int64 columns, see
    ``qesif_core.network.model``); ``dev_free``: when each device finished its last job; ``st``: the
    persistent state (``new_state``); ``out``: per-station energy accumulators (``en_tx``, ``en_rx``,
    ``en_idle``, seconds) and per-PAN counters (``frames``: data frames sent, ``drops``: frames the MACs
    gave up, ``ring_drops``: packets the gateway's full queue refused), added to.
    """
    n_devices = len(dev_cursor)
    n_pans = len(pan_lo) - 1
    width = 2 + 3 * int(np.max(np.diff(pan_lo), initial=0))
    scratch = {
        "heap": np.zeros(width, dtype=np.int64),
        "pos": np.zeros(width, dtype=np.int64),
        "kt": np.zeros(width),
        "kp": np.zeros(width, dtype=np.int64),
        "loc": np.zeros(n_devices, dtype=np.int64),
        "undecided": np.zeros(n_devices, dtype=np.int64),
        "waiting": np.zeros(n_devices, dtype=np.int64),
    }
    pans: _Pans = _Pans(job, st, out, acc_f, acc_i, scratch)
    pans.pan_dev, pans.pan_lo = pan_dev, pan_lo
    pans.cursor, pans.dev_hi, pans.dev_free = dev_cursor, dev_hi, dev_free
    pans.timeouts = timeouts
    pans.queue_limit = queue_limit
    pans.horizon = horizon
    pans.n_devices = n_devices
    for p in range(n_pans):
        pans.run_pan(p)
