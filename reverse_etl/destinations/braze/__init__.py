"""Braze: /users/track attributes and events, /users/delete (see shared/destinations/braze.md)."""
