"""Local services of the testbed: the ETSI GS QKD 014 key management entity and its certificates."""
