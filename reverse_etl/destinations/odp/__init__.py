"""Optimizely Data Platform (ODP): profiles, objects, lists and events (see shared/destinations/odp.md)."""
