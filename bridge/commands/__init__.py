"""Sub-commands of ``qesif``: each module defines ``register(subparsers)``; ``bridge.cli`` lists them."""
