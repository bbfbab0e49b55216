"""Event ingestion: from a handler's event to a row of TrackingEvent, never lost, never counted twice.

One module per stage, in the order an event meets them:

- ``event``: the one shape of an event (``Event``, built by ``new_event``) and its wire format;
- ``handoff``: what a web process does with it (``event_submit``), and the fallback chain;
- ``journal``: the process's local journal, shipped in batches by a thread (no Django);
- ``redis_stream``: XADD to the Redis stream, and the redis-py clients (no Django);
- ``consumer``: reads the stream in a consumer group and stores batches;
- ``spool``: events kept on disk while nothing else takes them, and their replay;
- ``store``: the only writer of TrackingEvent rows (``events_store``).
"""
