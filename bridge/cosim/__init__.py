"""Co-simulation: the orchestrator, its ZeroMQ protocol, and the supervision of peer processes."""
