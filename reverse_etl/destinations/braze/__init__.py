"""Braze: /users/track attributes and events, /users/delete, subscription groups and catalog items
(see shared/destinations/braze.md): config.py, validate.py, payload.py, destination.py, writer.py."""
