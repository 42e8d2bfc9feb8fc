"""A city-wide QKD network with trusted relays: topology, per-link key pools, routing, one-time-pad relay of
end-to-end keys and the accounting of what every relay has seen. Pure algorithms (numpy/scipy; no I/O).

The paper gives every gateway one QKD link to the control centre. Here QKD nodes (gateways, trusted relays,
the control centre) are joined by QKD links, each running the QKD engine block by block with Algorithm 1
gating its key into the link's pool and Algorithm 2 watching it; an end-to-end key between two nodes is
relayed hop by hop by one-time pad through trusted nodes (docs/qkd-network.md).
"""
