"""The set-based merge of a batch of events into the rollups (SQL portable between PostgreSQL and SQLite)."""
from collections import Counter

from reporting.consolidation import sql
from reporting.consolidation.batch import BATCH, CLICK, OPEN, OPT_OUT, TEMPORARY_TABLES, Deltas, events_select, scopes_of
from reporting.consolidation.merge_links import link_keys_of, merge_links
from reporting.consolidation.merge_messages import merge_messages
from reporting.consolidation.merge_persons import merge_persons


def apply_event_batch(condition: str, params: list, *, rebuilt: bool = False) -> None:
    """Merges the events matching `condition` (SQL on `e`, the events table) into the rollups.

    Set-based: the events are read once into a temporary table, with what each counts as; additive counters
    are summed per key; per-message, per-link and per-person first times (and smallest domains) are aggregated
    into temporary tables beside their values before the merge (their rows looked up by key); those that
    appear or move earlier move the distinct counters, and only their rows are written.

    `rebuilt`: the events are all the events of deliveries whose rollups were just deleted; there is nothing to
    merge with, so rows are inserted directly.
    """
    sql.tune_merge(rebuilt=rebuilt)
    sql.drop_temporary(TEMPORARY_TABLES)
    sql.create_temporary(BATCH, events_select(condition), params)
    if rebuilt:
        # Millions of rows: the statistics let the planner size the aggregates over them.
        sql.analyze(BATCH)
    deltas = Deltas()
    _count_events(deltas)
    merge_messages(deltas, rebuilt=rebuilt)
    merge_links(deltas, rebuilt=rebuilt)
    merge_persons(deltas, rebuilt=rebuilt)
    deltas.write()
    sql.drop_temporary(TEMPORARY_TABLES)


def _count_events(deltas: Deltas) -> None:
    """Opens, clicks and opt-outs per half hour, opens per user agent, clicks per link and day."""
    for delivery_id, is_machine, bucket, opens, clicks, opt_outs in sql.fetch(
        f"SELECT delivery_id, is_machine, {sql.half_hour('logged_at')} AS bucket, "
        f"COUNT(*) FILTER (WHERE kind = {OPEN}), COUNT(*) FILTER (WHERE kind = {CLICK}), "
        f"COUNT(*) FILTER (WHERE kind = {OPT_OUT}) FROM {BATCH} "
        f"WHERE kind IN ({OPEN}, {CLICK}, {OPT_OUT}) GROUP BY delivery_id, is_machine, bucket"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.bucket[(delivery_id, scope, sql.as_datetime(bucket))].update(
                Counter(opens=opens, clicks=clicks, opt_outs=opt_outs)
            )
    for delivery_id, is_machine, user_agent_id, opens in sql.fetch(
        f"SELECT delivery_id, is_machine, COALESCE(user_agent_id, 0) AS ua, COUNT(*) FROM {BATCH} "
        f"WHERE kind = {OPEN} GROUP BY delivery_id, is_machine, ua"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.user_agent[(delivery_id, scope, user_agent_id)]["opens"] += opens
    link_clicks = sql.fetch(
        f"SELECT delivery_id, is_machine, tracked_url_id, {sql.day('logged_at')} AS day, COUNT(*) FROM {BATCH} "
        f"WHERE tracked_url_id IS NOT NULL AND kind = {CLICK} GROUP BY delivery_id, is_machine, tracked_url_id, day"
    )
    keys = link_keys_of({url_id for _d, _m, url_id, _day, _n in link_clicks})
    for delivery_id, is_machine, url_id, day, clicks in link_clicks:
        for scope in scopes_of(bool(is_machine)):
            for kind, key in keys[url_id]:
                deltas.link[(delivery_id, scope, kind, key, sql.as_date(day))]["clicks"] += clicks
