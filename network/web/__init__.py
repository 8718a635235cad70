"""The web server: health, subscription pages, the staff dashboard, calendars and metrics."""
