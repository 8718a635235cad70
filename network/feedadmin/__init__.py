"""Feeds and routes managed live: from a room (``!feed``) and from the dashboard."""
