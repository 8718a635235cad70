"""Subscriptions: double opt-in, preferences, the messages and links subscribers get."""
