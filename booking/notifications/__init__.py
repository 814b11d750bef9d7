"""Notifications: the outbox every message to a person goes through, and the mailer that sends it."""
