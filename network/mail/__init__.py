"""Mail transport: SMTP connections, message building, recipient addresses."""
