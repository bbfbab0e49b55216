"""The summary and the tracking indicators of a delivery, overall and per domain (formulas: see the
package docstring)."""
from deliveries.models import Delivery
from reporting.models import DeliveryReportState, DeliveryRollup, DomainMessageStats, DomainRollup
from reporting.percentages import percent

EVENT_COUNTERS = ("opens", "distinct_opens", "clicks", "distinct_clicks", "persons", "opt_outs", "mirror_page_views")


def _event_counts(model, *, humans_only: bool, **filters) -> dict:
    row = model.objects.filter(humans_only=humans_only, **filters).values(*EVENT_COUNTERS).first()
    return row or dict.fromkeys(EVENT_COUNTERS, 0)


def indicator_figures(*, to_deliver: int, text_messages: int, success: int, counts: dict) -> dict:
    """The tracking indicators from message figures and event rollup counters (see the package docstring)."""
    measured_opens = counts["distinct_opens"]
    html_messages = to_deliver - text_messages
    if text_messages and html_messages > 0:
        distinct_opens = int(measured_opens * to_deliver / html_messages + 0.5)
    else:
        distinct_opens = measured_opens
    distinct_clicks = counts["distinct_clicks"]
    figures = {
        "to_deliver": to_deliver,
        "success": success,
        "distinct_opens": distinct_opens,
        "measured_distinct_opens": measured_opens,
        "total_opens": counts["opens"],
        "distinct_clicks": distinct_clicks,
        "distinct_click_persons": counts["persons"],
        "total_clicks": counts["clicks"],
        "estimated_forwards": max(counts["persons"] - distinct_clicks, 0),
        "raw_reactivity": percent(distinct_clicks, measured_opens),
        "estimated_reactivity": percent(distinct_clicks, distinct_opens),
        "opt_outs": counts["opt_outs"],
        "mirror_page_views": counts["mirror_page_views"],
    }
    figures["percentages"] = {"success": percent(success, to_deliver)} | {
        name: percent(figures[name], success)
        for name in (
            "distinct_opens", "total_opens", "distinct_clicks", "distinct_click_persons", "total_clicks",
            "estimated_forwards", "opt_outs", "mirror_page_views",
        )
    }
    return figures


def report_summary(*, delivery: Delivery, humans_only: bool = True) -> dict:
    state = DeliveryReportState.objects.filter(delivery_id=delivery.pk).first()
    excluded = sorted((delivery.excluded_by_cause or {}).items(), key=lambda item: (-item[1], item[0]))
    return {
        "delivery": {"id": delivery.pk, "label": delivery.label, "status": delivery.status},
        "initial_population": delivery.initial_population,
        "excluded": sum(count for _, count in excluded),
        "excluded_by_cause": [{"cause": cause, "recipients": count} for cause, count in excluded],
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "new_quarantines": state.new_quarantines if state else 0,
        "percentages": {
            "processed": percent(delivery.processed, delivery.to_deliver),
            "success": percent(delivery.success, delivery.to_deliver),
            "errors": percent(delivery.errors, delivery.to_deliver),
        },
    }


def report_indicators(*, delivery: Delivery, humans_only: bool = True) -> dict:
    state = DeliveryReportState.objects.filter(delivery_id=delivery.pk).first()
    figures = indicator_figures(
        to_deliver=delivery.to_deliver,
        text_messages=state.text_messages if state else 0,
        success=delivery.success,
        counts=_event_counts(DeliveryRollup, humans_only=humans_only, delivery_id=delivery.pk),
    )
    message_stats = {
        row["domain"]: row
        for row in DomainMessageStats.objects.filter(delivery_id=delivery.pk).values(
            "domain", "to_deliver", "text_messages", "success"
        )
    }
    event_stats = {
        row["domain"]: row
        for row in DomainRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only).values(
            "domain", *EVENT_COUNTERS
        )
    }
    by_domain = []
    for domain in message_stats.keys() | event_stats.keys():
        messages = message_stats.get(domain, {})
        by_domain.append(
            {"domain": domain}
            | indicator_figures(
                to_deliver=messages.get("to_deliver", 0),
                text_messages=messages.get("text_messages", 0),
                success=messages.get("success", 0),
                counts=event_stats.get(domain) or dict.fromkeys(EVENT_COUNTERS, 0),
            )
        )
    by_domain.sort(key=lambda row: (-row["to_deliver"], -row["total_opens"], row["domain"]))
    return figures | {"by_domain": by_domain}
