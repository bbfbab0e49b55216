"""Report and recompute endpoints under `/api/deliveries/<id>/` (the deliveries app owns the rest), and the
reports across deliveries under `/api/reports/<name>/`."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from beacon.csv_export import csv_text
from beacon.exceptions import ServiceError
from reporting.consolidation.recompute import delivery_recompute
from reporting.reports import REPORT_NAMES, report_get
from reporting.reports.across import ACROSS_REPORT_NAMES, BUCKETS, MAX_PERIOD_DAYS, SORTS, across_report_get
from reporting.reports.tables import across_report_table, report_table

MACHINE_CHOICES = {"exclude": True, "include": False}


class CsvRenderer(BaseRenderer):
    """Renders `{"header": [...], "rows": [[...]]}` as CSV."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return csv_text(data["header"], data["rows"]).encode()


def humans_only_param(params) -> bool:
    """`?machine=include` counts machine events too; absent or `exclude` means humans only."""
    value = params.get("machine") or "exclude"
    if value not in MACHINE_CHOICES:
        raise ServiceError("Invalid input.", fields={"machine": ["Must be 'include' or 'exclude'."]})
    return MACHINE_CHOICES[value]


class ReportApi(APIView):
    """A report as JSON, or as CSV with `?format=csv`; read by every role (aggregates, no personal data)."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CsvRenderer]

    def _in_json(self) -> None:
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type

    def handle_exception(self, exc):
        # Errors are JSON whatever format was asked for.
        self._in_json()
        return super().handle_exception(exc)

    def options(self, request, *args, **kwargs):
        # So is the endpoint's description (OPTIONS): it is no table a CSV could hold.
        self._in_json()
        return super().options(request, *args, **kwargs)


class DeliveryReportApi(ReportApi):
    @extend_schema(
        summary="A report of the delivery, from its rollups",
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, enum=list(REPORT_NAMES)),
            OpenApiParameter("machine", str, enum=list(MACHINE_CHOICES), description="Count machine events too."),
            OpenApiParameter("format", str, enum=["json", "csv"]),
            OpenApiParameter(
                "granularity", str, enum=["half-hour", "hour", "day"], description="statistics; bounces (hour or day)"
            ),
            OpenApiParameter("table", str, enum=["reason", "domain", "time"], description="bounces: the CSV's table"),
            OpenApiParameter("group_by", str, enum=["url", "label", "category"], description="urls"),
            OpenApiParameter("from", OpenApiTypes.DATE, description="urls: first day of the period"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="urls: last day of the period"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, delivery_id: int, name: str) -> Response:
        data = report_get(
            delivery_id=delivery_id,
            name=name,
            humans_only=humans_only_param(request.query_params),
            params=request.query_params,
        )
        if request.accepted_renderer.format != CsvRenderer.format:
            return Response(data)
        header, rows = report_table(name, data)
        return Response(
            {"header": header, "rows": rows},
            headers={"Content-Disposition": f'attachment; filename="delivery-{delivery_id}-{name}.csv"'},
        )


class AcrossReportApi(ReportApi):
    @extend_schema(
        summary="A report across the deliveries of a period, from the rollups",
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, enum=list(ACROSS_REPORT_NAMES)),
            OpenApiParameter("from", OpenApiTypes.DATE, description="First day (UTC); default: 29 days before 'to'"),
            OpenApiParameter("to", OpenApiTypes.DATE, description=f"Last day (UTC); default: today. At most {MAX_PERIOD_DAYS} days."),
            OpenApiParameter("machine", str, enum=list(MACHINE_CHOICES), description="Count machine events too."),
            OpenApiParameter("format", str, enum=["json", "csv"]),
            OpenApiParameter("sort", str, enum=[*SORTS, *(f"-{sort}" for sort in SORTS)], description="deliveries"),
            OpenApiParameter("bucket", str, enum=list(BUCKETS), description="over-time"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, name: str) -> Response:
        data = across_report_get(name=name, humans_only=humans_only_param(request.query_params), params=request.query_params)
        if request.accepted_renderer.format != CsvRenderer.format:
            return Response(data)
        header, rows = across_report_table(name, data)
        return Response(
            {"header": header, "rows": rows},
            headers={"Content-Disposition": f'attachment; filename="reports-{name}-{data["from"]}-{data["to"]}.csv"'},
        )


class DeliveryRecomputeApi(APIView):
    @extend_schema(
        summary="Recompute delivery and tracking indicators", request=None, responses=OpenApiTypes.OBJECT
    )
    def post(self, request, delivery_id: int) -> Response:
        delivery_recompute(delivery_id=delivery_id)
        return Response(report_get(delivery_id=delivery_id, name="summary"))
