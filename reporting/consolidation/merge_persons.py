"""The batch's persons who clicked: a browser id, or the recipient when the click carried none."""
from reporting.consolidation import sql
from reporting.consolidation.batch import BATCH, BATCH_MESSAGES, BATCH_PERSONS, CLICK, Deltas
from reporting.consolidation.sql import Table
from reporting.models import PersonRollup

ROLLUP = Table(PersonRollup)
# (smallest-domain column, humans_only)
PERSON_DOMAINS = ((ROLLUP.domain, False), (ROLLUP.human_domain, True))
PERSON_COLUMNS = ", ".join((ROLLUP.delivery_id, ROLLUP.person_key, *(column for column, _ in PERSON_DOMAINS)))


def _person_key(alias: str) -> str:
    return f"COALESCE(NULLIF({alias}.browser_id, ''), 'm' || CAST({alias}.message_id AS VARCHAR(20)))"


def merge_persons(deltas: Deltas, *, rebuilt: bool) -> None:
    """Persons who clicked; each counts in its smallest recipient domain (moving there if smaller)."""
    table = str(ROLLUP)
    domain_column, human_domain_column = (column for column, _ in PERSON_DOMAINS)
    domain = "COALESCE(m.domain, '')"
    person_key = _person_key("e")
    batch = (
        f"SELECT e.delivery_id, {person_key} AS {ROLLUP.person_key}, MIN({sql.binary(domain)}) AS {domain_column}, "
        f"MIN({sql.binary(f'CASE WHEN NOT e.is_machine THEN {domain} END')}) AS {human_domain_column} FROM {BATCH} e "
        f"LEFT JOIN {BATCH_MESSAGES} m ON m.delivery_id = e.delivery_id AND m.message_id = e.message_id "
        f"WHERE e.kind = {CLICK} AND {person_key} IS NOT NULL GROUP BY e.delivery_id, {person_key}"
    )
    if rebuilt:
        sql.create_temporary(BATCH_PERSONS, batch)
    else:
        match = f"r.{ROLLUP.delivery_id} = b.delivery_id AND r.{ROLLUP.person_key} = b.person_key"
        sql.create_temporary(
            BATCH_PERSONS,
            f"SELECT b.*, r.{domain_column} AS old_{domain_column}, r.{human_domain_column} AS old_{human_domain_column} "
            f"FROM ({batch} ORDER BY {sql.binary(person_key)}, e.delivery_id) b {sql.join_rows(table, 'r', match, left=True)}",
        )
    for column, scope in PERSON_DOMAINS:
        before = "NULL" if rebuilt else f"old_{column}"
        for delivery_id, old, new, persons in sql.fetch(
            f"SELECT delivery_id, {before}, {column}, COUNT(*) FROM {BATCH_PERSONS} "
            f"WHERE {sql.moved(column, rebuilt=rebuilt, text=True)} GROUP BY 1, 2, 3"
        ):
            if old is None:
                deltas.delivery[(delivery_id, scope)]["persons"] += persons
            else:
                deltas.domain[(delivery_id, scope, old)]["persons"] -= persons
            deltas.domain[(delivery_id, scope, new)]["persons"] += persons
    # Only new persons, or those whose smallest domain moves, are written.
    changed = " OR ".join(f"({sql.moved(column, rebuilt=rebuilt, text=True)})" for column, _ in PERSON_DOMAINS)
    sql.write_rows(
        table, PERSON_COLUMNS,
        f"SELECT {PERSON_COLUMNS} FROM {BATCH_PERSONS} WHERE {changed}",
        f"{ROLLUP.delivery_id}, {ROLLUP.person_key}", f"{sql.binary('person_key')}, delivery_id",
        [f"{column} = {sql.smallest(f'{table}.{column}', f'excluded.{column}', text=True)}" for column, _ in PERSON_DOMAINS],
        rebuilt=rebuilt,
    )
