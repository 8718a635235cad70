"""Need Assistance cases: state, transitions, the team thread, reminders, business hours."""
