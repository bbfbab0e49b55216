"""The batch's clicks on links: clicks per link key (URL, label, category) and day, first clicks per message
and URL, whose appearing or moving earlier moves the distinct clicks per key and the click streams."""
from collections import Counter

from deliveries.models import TrackedUrl
from reporting.consolidation import sql
from reporting.consolidation.batch import (
    BATCH,
    BATCH_LINKS,
    CLICK,
    HUMAN,
    LINK_KEYS,
    NEW_LINKS,
    OLD_LINKS,
    Deltas,
)
from reporting.consolidation.sql import Table
from reporting.models import LinkKind, MessageLinkRollup

ROLLUP = Table(MessageLinkRollup)
KEY_LENGTH = 300

# (first-click column, humans_only)
LINK_FIRSTS = ((ROLLUP.first_click_at, False), (ROLLUP.first_human_click_at, True))
LINK_COLUMNS = ", ".join(
    (ROLLUP.delivery_id, ROLLUP.message_id, ROLLUP.tracked_url_id, *(column for column, _ in LINK_FIRSTS))
)


def _link_keys(url_id: int, url: tuple | None) -> list[tuple[str, str]]:
    if url is None:
        return [(LinkKind.URL, str(url_id)), (LinkKind.LABEL, ""), (LinkKind.CATEGORY, "")]
    _mode, label, address, category = url
    return [
        (LinkKind.URL, str(url_id)),
        (LinkKind.LABEL, (label or address)[:KEY_LENGTH]),
        (LinkKind.CATEGORY, category[:KEY_LENGTH]),
    ]


def link_keys_of(url_ids: set[int]) -> dict[int, list[tuple[str, str]]]:
    """The (kind, key) of each link key a click on each tracked URL counts in; a deleted URL counts in its own
    URL key and the empty label and category."""
    urls = {}
    for chunk in sql.chunks(url_ids):
        urls.update(
            (pk, rest) for pk, *rest in TrackedUrl.objects.filter(id__in=chunk).values_list("id", "mode", "label", "url", "category")
        )
    return {url_id: _link_keys(url_id, urls.get(url_id)) for url_id in url_ids}


def _fill_link_keys(links: str) -> list[tuple[str, str]]:
    """Fills LINK_KEYS with the key of each kind (URL, label, category) of each URL of `links`, by number, and
    whether other URLs share it; returns the (kind, key) of each number."""
    keys = link_keys_of({url_id for (url_id,) in sql.fetch(f"SELECT DISTINCT tracked_url_id FROM {links}")})
    numbers: dict[tuple[str, str], int] = {}
    pairs = [(url_id, numbers.setdefault(key, len(numbers))) for url_id, url_keys in keys.items() for key in url_keys]
    urls_of_key = Counter(number for _, number in pairs)
    sql.execute(
        f"CREATE TEMPORARY TABLE {LINK_KEYS} (tracked_url_id BIGINT NOT NULL, key_id INTEGER NOT NULL, shared INTEGER NOT NULL)"
    )
    for chunk in sql.chunks(pairs, 500):
        sql.execute(
            f"INSERT INTO {LINK_KEYS} (tracked_url_id, key_id, shared) VALUES {', '.join(['(%s, %s, %s)'] * len(chunk))}",
            [value for url_id, number in chunk for value in (url_id, number, int(urls_of_key[number] > 1))],
        )
    return list(numbers)


def _count_distinct_link_clicks(links: str, deltas: Deltas, *, rebuilt: bool) -> None:
    """Moves the distinct clicks of each link key (URL, label, category) whose first click per recipient
    appeared or moved earlier, in both scopes: `links` has the rows of the messages concerned, with their first
    clicks before the merge (`old_...`) unless the delivery is `rebuilt`."""
    keys = _fill_link_keys(links)
    firsts = [column for column, _ in LINK_FIRSTS]
    olds = [] if rebuilt else [f"old_{column}" for column in firsts]
    # Per message and key: a key of one URL (always so for URLs) has its first clicks in that URL's row; a label
    # or category over several URLs, the earliest of its URLs'.
    per_key = (
        f"SELECT l.delivery_id, k.key_id, {', '.join(f'l.{column}' for column in firsts + olds)} "
        f"FROM {links} l JOIN {LINK_KEYS} k ON k.tracked_url_id = l.tracked_url_id AND k.shared = 0 UNION ALL "
        f"SELECT l.delivery_id, k.key_id, {', '.join(f'MIN(l.{column})' for column in firsts + olds)} "
        f"FROM {links} l JOIN {LINK_KEYS} k ON k.tracked_url_id = l.tracked_url_id AND k.shared = 1 "
        "GROUP BY l.delivery_id, l.message_id, k.key_id"
    )
    moves = []
    for column in firsts:
        moved = sql.moved(column, rebuilt=rebuilt)
        old = "NULL" if rebuilt else f"old_{column}"
        moves.append((f"CASE WHEN {moved} THEN 1 ELSE 0 END", sql.day(old), sql.day(column), moved))
    for delivery_id, key_id, *days, recipients in sql.fetch(
        f"SELECT delivery_id, key_id, {', '.join(', '.join(move[:3]) for move in moves)}, COUNT(*) FROM ({per_key}) firsts "
        f"WHERE {' OR '.join(f'({move[3]})' for move in moves)} GROUP BY {', '.join(str(n) for n in range(1, 9))}"
    ):
        kind, key = keys[key_id]
        for (_, scope), (moved, old_day, new_day) in zip(LINK_FIRSTS, (days[:3], days[3:])):
            if not moved:
                continue
            if old_day is not None:
                deltas.link[(delivery_id, scope, kind, key, sql.as_date(old_day))]["distinct_clicks"] -= recipients
            deltas.link[(delivery_id, scope, kind, key, sql.as_date(new_day))]["distinct_clicks"] += recipients


def merge_links(deltas: Deltas, *, rebuilt: bool) -> None:
    """Merges first clicks per message and URL, then moves the distinct clicks of URLs, labels and categories
    (a label's first click is the earliest over its URLs) and the click-stream pairs of the recipients
    concerned: pairs of the sequence before are removed, pairs of the sequence after added."""
    first_click, first_human_click = (column for column, _ in LINK_FIRSTS)
    sql.create_temporary(
        BATCH_LINKS,
        f"SELECT delivery_id, message_id, tracked_url_id, MIN(logged_at) AS {first_click}, "
        f"MIN(logged_at) FILTER (WHERE {HUMAN}) AS {first_human_click} FROM {BATCH} "
        f"WHERE kind = {CLICK} AND message_id IS NOT NULL AND tracked_url_id IS NOT NULL "
        "GROUP BY delivery_id, message_id, tracked_url_id",
    )
    table = str(ROLLUP)
    firsts = [column for column, _ in LINK_FIRSTS]
    if rebuilt:
        links = BATCH_LINKS
    else:
        # Every link row of the messages concerned (labels, categories and sequences span their URLs), with
        # the first clicks after the merge and before (old_...).
        match = f"r.{ROLLUP.delivery_id} = b.delivery_id AND r.{ROLLUP.message_id} = b.message_id"
        sql.create_temporary(
            OLD_LINKS,
            f"SELECT {', '.join(f'r.{column}' for column in LINK_COLUMNS.split(', '))} "
            f"FROM (SELECT DISTINCT delivery_id, message_id FROM {BATCH_LINKS} ORDER BY message_id, delivery_id) b "
            f"{sql.join_rows(table, 'r', match, left=False)}",
        )
        sql.create_temporary(
            NEW_LINKS,
            "SELECT delivery_id, message_id, tracked_url_id, "
            + ", ".join(f"MIN({column}) AS {column}, MIN(old_{column}) AS old_{column}" for column in firsts)
            + f" FROM (SELECT {LINK_COLUMNS}, {', '.join(f'{column} AS old_{column}' for column in firsts)} FROM {OLD_LINKS} "
            f"UNION ALL SELECT {LINK_COLUMNS}, NULL, NULL FROM {BATCH_LINKS}) links "
            # In the click sequences' order, which the windows below then sort cheaply.
            f"GROUP BY delivery_id, message_id, tracked_url_id ORDER BY message_id, {first_click}, tracked_url_id",
        )
        links = NEW_LINKS
    # The rows whose first clicks appear or move (links has them merged, with those before).
    changed = " OR ".join(f"({sql.moved(column, rebuilt=rebuilt)})" for column in firsts)
    sql.write_rows(
        table, LINK_COLUMNS, f"SELECT {LINK_COLUMNS} FROM {links} WHERE {changed}",
        f"{ROLLUP.delivery_id}, {ROLLUP.message_id}, {ROLLUP.tracked_url_id}", "message_id, tracked_url_id, delivery_id",
        [f"{column} = {sql.smallest(f'{table}.{column}', f'excluded.{column}')}" for column in firsts],
        rebuilt=rebuilt,
    )
    _count_distinct_link_clicks(links, deltas, rebuilt=rebuilt)
    for column, scope in LINK_FIRSTS:
        for first, sign in ((column, 1),) if rebuilt else ((column, 1), (f"old_{column}", -1)):
            for delivery_id, from_url, to_url, recipients in sql.fetch(
                "SELECT delivery_id, from_url, to_url, COUNT(*) FROM (SELECT delivery_id, tracked_url_id AS from_url, "
                f"LEAD(tracked_url_id) OVER (PARTITION BY message_id ORDER BY {first}, tracked_url_id) AS to_url "
                f"FROM {links} WHERE {first} IS NOT NULL) pairs WHERE to_url IS NOT NULL GROUP BY 1, 2, 3"
            ):
                deltas.stream[(delivery_id, scope, from_url, to_url)]["recipients"] += sign * recipients
