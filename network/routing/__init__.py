"""Routing: which rooms, channels and digest topics an item goes to, and how it looks there."""
