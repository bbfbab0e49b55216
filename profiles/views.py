"""The marketer's pages of recipients: profiles, lists with their members, and the CSV import (upload,
column mapping, progress, rejected rows). Each view reads through the selectors and writes through the
services; the roles are checked by `accounts.decorators.action_required`."""
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django.utils.http import urlencode

from accounts.decorators import action_required
from accounts.roles import MANAGE, READ_PERSONAL_DATA, READ_REPORTS, RELEASE_ADDRESSES, can
from beacon.exceptions import ServiceError, TransitionNotAllowed
from profiles import csv_files, selectors
from profiles.services import imports
from profiles.models import EmailStatus, ListImportStatus
from profiles.services.quarantine import address_release

PAGE_SIZE = 50


@action_required(READ_PERSONAL_DATA)
def profile_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    if status not in EmailStatus.values:
        status = ""
    page = Paginator(selectors.profile_list(search=search, email_status=status), PAGE_SIZE).get_page(request.GET.get("page"))
    filters = {key: value for key, value in (("q", search), ("status", status)) if value}
    return render(request, "profiles/profile_list.html", {
        "page": page,
        "search": search,
        "status": status,
        "statuses": EmailStatus.choices,
        "pager_query": "&" + urlencode(filters) if filters else "",
    })


@action_required(READ_PERSONAL_DATA)
def profile_detail(request: HttpRequest, profile_id: int) -> HttpResponse:
    profile = selectors.profile_get(profile_id=profile_id)
    return render(request, "profiles/profile_detail.html", {
        "profile": profile,
        "lists": selectors.profile_lists(profile_id=profile.pk),
        "address_failures": selectors.profile_address_failures(profile_id=profile.pk),
        "address_releases": selectors.profile_address_releases(profile_id=profile.pk),
        "can_release": can(request.user, RELEASE_ADDRESSES) and profile.email_status != EmailStatus.VALID
        and profile.opted_out_at is None,
    })


@action_required(RELEASE_ADDRESSES)
@require_http_methods(["GET", "POST"])
def profile_release(request: HttpRequest, profile_id: int) -> HttpResponse:
    """GET: says what releasing will do; POST: does it."""
    if request.method == "GET":
        return render(request, "profiles/profile_release.html", {"profile": selectors.profile_get(profile_id=profile_id)})
    try:
        address_release(profile_id=profile_id, released_by=request.user)
    except TransitionNotAllowed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The address is released: valid again, its soft bounce count reset.")
    return redirect("profiles:profile-detail", profile_id=profile_id)


@action_required(READ_REPORTS)
def list_list(request: HttpRequest) -> HttpResponse:
    return render(request, "profiles/list_list.html", {
        "lists": selectors.list_list(),
        "can_see_members": can(request.user, READ_PERSONAL_DATA),
        "can_import": can(request.user, MANAGE),
    })


@action_required(READ_PERSONAL_DATA)
def list_detail(request: HttpRequest, list_id: int) -> HttpResponse:
    list_obj = selectors.list_get(list_id=list_id)
    page = Paginator(selectors.profile_list(list_id=list_obj.pk), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "profiles/list_detail.html", {
        "list": list_obj,
        "page": page,
        "can_import": can(request.user, MANAGE),
    })


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A header row naming the columns, then one person a row; comma or semicolon separated.",
    )
    update_existing = forms.BooleanField(
        required=False, label="Update existing profiles", help_text="Overwrite the names and attributes of addresses Beacon knows."
    )


@action_required(MANAGE)
def list_import(request: HttpRequest, list_id: int) -> HttpResponse:
    """Step 1: the upload. A readable file goes on to its column mapping; a refused one is a form error
    (413 for a file over the size limit), and nothing is kept of it."""
    list_obj = selectors.list_get(list_id=list_id)
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            list_import = imports.list_import_create(
                list_obj=list_obj,
                file=form.cleaned_data["file"],
                created_by=request.user,
                update_existing=form.cleaned_data["update_existing"],
            )
        except ServiceError as exc:
            form.add_error("file", exc.message)
            status = exc.status_code
        else:
            return redirect("profiles:list-import-detail", list_obj.pk, list_import.pk)
    elif request.method == "POST":
        status = 400
    return render(request, "profiles/list_import.html", {
        "list": list_obj,
        "form": form,
        "imports": selectors.list_imports_recent(list_id=list_obj.pk),
        "max_megabytes": settings.BEACON_IMPORT_MAX_BYTES // (1024 * 1024),
    }, status=status)


class ImportMappingForm(forms.Form):
    """One choice per column of the file, proposed from its header name."""

    update_existing = forms.BooleanField(required=False, label="Update existing profiles")

    def __init__(self, *args, header: list[str], mapping: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header = header
        for index, (name, target) in enumerate(zip(header, mapping)):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=name or f"Column {index + 1}",
                choices=[(choice, choice) for choice in csv_files.column_targets(name)],
                initial=target,
            )

    def mapping(self) -> list[str]:
        return [self.cleaned_data[f"column_{index}"] for index in range(len(self.header))]

    def columns(self) -> list:
        return [self[f"column_{index}"] for index in range(len(self.header))]


@action_required(MANAGE)
def list_import_detail(request: HttpRequest, list_id: int, import_id: int) -> HttpResponse:
    """Step 2, while the import waits for it: the column mapping. Then its progress and rejected rows."""
    list_import = selectors.list_import_get(list_id=list_id, import_id=import_id)
    context = {"list": list_import.list, "import": list_import}
    if list_import.status == ListImportStatus.MAPPING:
        form = ImportMappingForm(
            request.POST or None,
            header=list_import.header,
            mapping=list_import.mapping,
            initial={"update_existing": list_import.update_existing},
        )
        if request.method == "POST" and form.is_valid():
            try:
                imports.list_import_map(
                    import_id=list_import.pk, mapping=form.mapping(), update_existing=form.cleaned_data["update_existing"]
                )
            except (ValidationError, ServiceError) as exc:
                form.add_error(None, exc.messages if isinstance(exc, ValidationError) else exc.message)
            else:
                return redirect("profiles:list-import-detail", list_id, import_id)
        preview = selectors.list_import_preview(list_import=list_import)
        columns = [
            {"field": field, "samples": [row[index] if index < len(row) else "" for row in preview]}
            for index, field in enumerate(form.columns())
        ]
        return render(request, "profiles/list_import_mapping.html", context | {"form": form, "columns": columns},
                      status=400 if form.errors else 200)
    return render(request, "profiles/list_import_progress.html", context | {
        "progress": selectors.list_import_progress(list_import=list_import),
        "rejections": selectors.list_import_rejections(list_import=list_import),
        "header": list_import.header,
    })


@action_required(MANAGE)
def list_import_progress(request: HttpRequest, list_id: int, import_id: int) -> JsonResponse:
    list_import = selectors.list_import_get(list_id=list_id, import_id=import_id)
    return JsonResponse(selectors.list_import_progress(list_import=list_import))


@action_required(MANAGE)
def list_import_rejections(request: HttpRequest, list_id: int, import_id: int) -> StreamingHttpResponse:
    list_import = selectors.list_import_get(list_id=list_id, import_id=import_id)
    response = StreamingHttpResponse(
        selectors.list_import_rejections_csv(list_import=list_import), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{list_import.pk}-rejected-rows.csv"'
    return response

