"""Digests: who is due, what goes in, how it is rendered and sent, and what a send did."""
