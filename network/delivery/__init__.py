"""Delivery: the outbox runner that posts items into Matrix rooms and apprise channels,
exactly once.
"""
