"""Development servers for the demo and the tests: a local Synapse, a mail sink, the demo.

Nothing in the service imports them; they need only the ``demo`` extra.
"""
