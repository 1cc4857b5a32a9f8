"""Optimizely Experimentation: list attributes, definitions (REST v2) and conversion events (Event API).

See shared/destinations/optimizely.md for the API facts. One writer per sync type:

* :mod:`.lists` - audience syncs replace a Web list attribute's whole ``list_content``;
* :mod:`.definitions` - records syncs create / update / archive attributes, custom events, audiences;
* :mod:`.events` - events syncs post visitors / snapshots / events to the Event API.
"""
