"""A feed library with no service state: fetch, parse, sanitize, classify, schedule."""
