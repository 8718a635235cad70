"""The community of practice: cohort spaces and rooms, member updates, webinars and
reminders, calendars.
"""
