"""Polling: when each feed is fetched, and what happens to what it brings."""
