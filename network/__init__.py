"""The libhub service: settings, storage, Matrix, delivery, digests, web and the CLI."""
