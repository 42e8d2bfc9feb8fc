"""The built-in IoT network model: topology, IEEE 802.15.4 access links, queues, MQTT/CoAP exchanges.

Pure numpy (no sockets, no global state). One call simulates one round of every device at once; queues are
computed with the vectorised max-plus form of Lindley's recursion, never with one Python object per packet.
"""
