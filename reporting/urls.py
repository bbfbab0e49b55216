from django.urls import path

from reporting import across_views, views

app_name = "reporting"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("deliveries/<int:delivery_id>/", views.delivery_summary, name="delivery-summary"),
    path("deliveries/<int:delivery_id>/progress/", views.delivery_progress, name="delivery-progress"),
    path("deliveries/<int:delivery_id>/log/", views.delivery_log, name="delivery-log"),
    path("deliveries/<int:delivery_id>/tracking/", views.delivery_tracking, name="delivery-tracking"),
    path("deliveries/<int:delivery_id>/reports/", views.delivery_reports, name="delivery-reports"),
    path("deliveries/<int:delivery_id>/reports/<str:name>.csv", views.delivery_report_csv, name="delivery-report-csv"),
    path("deliveries/<int:delivery_id>/audit/", views.delivery_audit, name="delivery-audit"),
    path("deliveries/<int:delivery_id>/recompute/", views.delivery_recompute_view, name="delivery-recompute"),
    path("deliveries/<int:delivery_id>/hot-clicks/frame/", views.hot_clicks_frame, name="hot-clicks-frame"),
    path("reports/", across_views.reports_page, name="reports"),
    path("reports/<str:name>.csv", across_views.reports_csv, name="reports-csv"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/token/", views.settings_token_create, name="settings-token-create"),
    path("settings/token/revoke/", views.settings_token_revoke, name="settings-token-revoke"),
]
