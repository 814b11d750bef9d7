"""Calendars: feeds of busy time for calendar clients, and labs\x27 own calendars imported as busy time."""
