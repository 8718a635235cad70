"""The Matrix side of the service: the gateway to the homeserver (login, sync, sends)."""
