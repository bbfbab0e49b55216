"""The batch's messages: additive counters per delivery and domain, and per-message first times, whose
appearing or moving earlier moves the distinct opens and clicks."""
from deliveries.models import Message
from profiles.emails import email_domain_sql
from reporting.consolidation import sql
from reporting.consolidation.batch import BATCH, BATCH_MESSAGES, CLICK, COUNTED, HUMAN, OPEN, Deltas
from reporting.consolidation.sql import Table
from reporting.models import MessageRollup

MESSAGES = Table(Message)
ROLLUP = Table(MessageRollup)

# (first-time column, humans_only, counter of the small tables)
MESSAGE_FIRSTS = (
    (ROLLUP.first_open_at, False, "distinct_opens"),
    (ROLLUP.first_human_open_at, True, "distinct_opens"),
    (ROLLUP.first_click_at, False, "distinct_clicks"),
    (ROLLUP.first_human_click_at, True, "distinct_clicks"),
)
MESSAGE_COLUMNS = (ROLLUP.message_id, ROLLUP.delivery_id, ROLLUP.domain, *(column for column, _, _ in MESSAGE_FIRSTS))


def merge_messages(deltas: Deltas, *, rebuilt: bool) -> None:
    """Additive counters per domain; per-message rows, whose first times move the distinct opens and clicks.

    BATCH_MESSAGES has, per message of the batch (and per delivery, its events without one), the counted
    events in both scopes, the first times (a counted click implies an open), the recipient's domain and the
    first times of the message's row before the merge (`old_...`).
    """
    table = str(ROLLUP)
    firsts = [column for column, _, _ in MESSAGE_FIRSTS]
    first_open, first_human_open, first_click, first_human_click = firsts
    opened = f"kind IN ({OPEN}, {CLICK})"
    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE {condition}) AS {name}, COUNT(*) FILTER (WHERE {condition} AND {HUMAN}) AS human_{name}"
        for name, condition in COUNTED
    )
    batch = (
        f"SELECT delivery_id, message_id, {counts}, "
        f"MIN(logged_at) FILTER (WHERE {opened}) AS {first_open}, "
        f"MIN(logged_at) FILTER (WHERE {opened} AND {HUMAN}) AS {first_human_open}, "
        f"MIN(logged_at) FILTER (WHERE kind = {CLICK}) AS {first_click}, "
        f"MIN(logged_at) FILTER (WHERE kind = {CLICK} AND {HUMAN}) AS {first_human_click} "
        f"FROM {BATCH} GROUP BY delivery_id, message_id"
    )
    email = f"m.{MESSAGES.email}"
    if rebuilt:
        sql.create_temporary(
            BATCH_MESSAGES,
            f"SELECT b.*, {email_domain_sql(email)} AS {ROLLUP.domain} FROM ({batch}) b "
            f"LEFT JOIN {MESSAGES} m ON m.{MESSAGES.id} = b.message_id",
        )
        # Large: the statistics let the planner hash the persons' join to it rather than sort both sides.
        sql.analyze(BATCH_MESSAGES)
    else:
        # A message with a row has its domain there; only a new one is looked up (a subquery: by primary key).
        email_domain = f"(SELECT {email_domain_sql(email)} FROM {MESSAGES} m WHERE m.{MESSAGES.id} = b.message_id)"
        match = f"r.{ROLLUP.delivery_id} = b.delivery_id AND r.{ROLLUP.message_id} = b.message_id"
        sql.create_temporary(
            BATCH_MESSAGES,
            f"SELECT b.*, COALESCE(r.{ROLLUP.domain}, {email_domain}, '') AS {ROLLUP.domain}, "
            + ", ".join(f"r.{column} AS old_{column}" for column in firsts)
            # In key order, the lookups read the rollup's pages in order.
            + f" FROM ({batch} ORDER BY message_id, delivery_id) b {sql.join_rows(table, 'r', match, left=True)}",
        )
    sums = ", ".join(f"SUM({name}), SUM(human_{name})" for name, _ in COUNTED)
    for delivery_id, domain, *counts in sql.fetch(
        f"SELECT delivery_id, domain, {sums} FROM {BATCH_MESSAGES} GROUP BY delivery_id, domain"
    ):
        for (name, _), all_count, human_count in zip(COUNTED, counts[::2], counts[1::2]):
            for scope, count in ((False, int(all_count)), (True, int(human_count))):
                deltas.delivery[(delivery_id, scope)][name] += count
                deltas.domain[(delivery_id, scope, domain)][name] += count
    for column, scope, counter in MESSAGE_FIRSTS:
        before = "NULL" if rebuilt else sql.half_hour(f"old_{column}")
        for delivery_id, domain, old_bucket, new_bucket, recipients in sql.fetch(
            f"SELECT delivery_id, domain, {before}, {sql.half_hour(column)}, COUNT(*) FROM {BATCH_MESSAGES} "
            f"WHERE message_id IS NOT NULL AND {sql.moved(column, rebuilt=rebuilt)} GROUP BY 1, 2, 3, 4"
        ):
            if old_bucket is None:
                deltas.delivery[(delivery_id, scope)][counter] += recipients
                deltas.domain[(delivery_id, scope, domain)][counter] += recipients
            else:
                deltas.bucket[(delivery_id, scope, sql.as_datetime(old_bucket))][counter] -= recipients
            deltas.bucket[(delivery_id, scope, sql.as_datetime(new_bucket))][counter] += recipients
    columns = ", ".join(MESSAGE_COLUMNS)
    # A message opened or clicked has a row (so a row always has `first_open_at`); only a new one, or one whose
    # first times move, is written.
    changed = " OR ".join(f"({sql.moved(column, rebuilt=rebuilt)})" for column in firsts)
    sql.write_rows(
        table, columns,
        f"SELECT {columns} FROM {BATCH_MESSAGES} WHERE message_id IS NOT NULL AND {first_open} IS NOT NULL "
        f"AND ({changed})",
        f"{ROLLUP.delivery_id}, {ROLLUP.message_id}", "message_id, delivery_id",
        [f"{column} = {sql.smallest(f'{table}.{column}', f'excluded.{column}')}" for column in firsts],
        rebuilt=rebuilt,
    )
