"""The CSV table of each report: a header and rows, from the report's data."""
from reporting.reports.across import DELIVERY_COLUMNS as ACROSS_DELIVERY_COLUMNS
from reporting.reports.deliverability import FAILURE_SERIES_TYPES
from reporting.reports.time_series import SERIES_COUNTERS

INDICATOR_COLUMNS = (
    "to_deliver", "success", "distinct_opens", "total_opens", "distinct_clicks", "distinct_click_persons",
    "total_clicks", "estimated_forwards", "raw_reactivity", "estimated_reactivity", "opt_outs", "mirror_page_views",
)


def report_table(name: str, data: dict) -> tuple[list[str], list[list]]:
    """The CSV table of a report: a header and rows."""
    if name == "summary":
        rows = [[key, data[key]] for key in ("initial_population", "excluded", "to_deliver", "processed", "success", "errors", "new_quarantines")]
        rows += [[f"excluded: {row['cause']}", row["recipients"]] for row in data["excluded_by_cause"]]
        return ["indicator", "value"], rows
    if name == "indicators":
        rows = [["(all)", *(data[c] for c in INDICATOR_COLUMNS)]]
        rows += [[row["domain"], *(row[c] for c in INDICATOR_COLUMNS)] for row in data["by_domain"]]
        return ["domain", *INDICATOR_COLUMNS], rows
    if name == "statistics":
        return ["start", *SERIES_COUNTERS], [[row["start"].isoformat(), *(row[c] for c in SERIES_COUNTERS)] for row in data["series"]]
    if name == "urls":
        # By URL, each row is one tracked link: its name (label, else URL) and its URL.
        first = "link" if data["group_by"] == "url" else data["group_by"]
        return (
            [first, "url", "clicks", "distinct_clicks", "share"],
            [[row["name"], row.get("url", ""), row["clicks"], row["distinct_clicks"], row["share"]] for row in data["links"]],
        )
    if name == "hot-clicks":
        columns = ["position", "url", "label", "clicks", "share"]
        return columns, [[row[c] for c in columns] for row in data["links"]]
    if name == "opens-breakdown":
        rows = [
            [scope, facet, row["name"], row["opens"], row["share"]]
            for scope in ("all", "mobile")
            for facet in ("os", "device", "browser")
            for row in data[scope][facet]
        ]
        return ["devices", "facet", "name", "opens", "share"], rows
    if name == "bounces":
        return _bounces_table(data)
    columns = ["hour", "success", "errors", "total"]
    return columns, [[row["hour"].isoformat(), row["success"], row["errors"], row["total"]] for row in data["hours"]]


def _bounces_table(data: dict) -> tuple[list[str], list[list]]:
    if data["table"] == "domain":
        columns = ["domain", "messages", "hard", "soft", "ignored"]
        return columns, [[row[c] for c in columns] for row in data["by_domain"]]
    if data["table"] == "time":
        kinds = [str(kind) for kind in FAILURE_SERIES_TYPES]
        return ["start", *kinds, "total"], [[row["start"].isoformat(), *(row[k] for k in kinds), row["total"]] for row in data["series"]]
    columns = ["failure_type", "failure_reason", "messages", "share"]
    return columns, [[row[c] for c in columns] for row in data["by_reason"]]


def across_report_table(name: str, data: dict) -> tuple[list[str], list[list]]:
    """The CSV table of a report across deliveries (`reports.across`): a header and rows."""
    if name == "deliveries":
        header = ["delivery_id", "label", "status", "sent_at", *ACROSS_DELIVERY_COLUMNS]
        rows = [
            [row["id"], row["label"], row["status"], row["sent_at"].isoformat(), *(row[c] for c in ACROSS_DELIVERY_COLUMNS)]
            for row in data["deliveries"]
        ]
        rows.append(["", "(all)", "", "", *(data["totals"][c] for c in ACROSS_DELIVERY_COLUMNS)])
        return header, rows
    if name == "opens-breakdown":
        return report_table(name, data)
    columns = ["opt_outs", "processed", "failed", "failed_rate"]
    return ["start", *columns], [[row["start"].isoformat(), *(row[c] for c in columns)] for row in data["series"]]
