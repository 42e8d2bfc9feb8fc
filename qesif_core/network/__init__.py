"""The built-in IoT network model: topology, IEEE 802.15.4 or 802.11 access, queues, MQTT/CoAP exchanges.

Numpy and one compiled event loop (no sockets, no global state). One call simulates one round of every
device at once: the access channels in the loop (at most one pending frame per device), the queues behind
them with the vectorised max-plus form of Lindley's recursion; never one Python object per packet.
"""
