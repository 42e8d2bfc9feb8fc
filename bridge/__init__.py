"""bridge: everything with I/O around qesif_core: scenarios, the orchestrator and ZeroMQ protocol,
simulator launchers, results, figures, services and the ``qesif`` command line."""
