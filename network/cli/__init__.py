"""The libhub command line."""
