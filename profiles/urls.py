from django.urls import path

from profiles import views

app_name = "profiles"

urlpatterns = [
    path("profiles/", views.profile_list, name="profile-list"),
    path("profiles/<int:profile_id>/", views.profile_detail, name="profile-detail"),
    path("profiles/<int:profile_id>/release/", views.profile_release, name="profile-release"),
    path("lists/", views.list_list, name="list-list"),
    path("lists/<int:list_id>/", views.list_detail, name="list-detail"),
    path("lists/<int:list_id>/import/", views.list_import, name="list-import"),
    path("lists/<int:list_id>/imports/<int:import_id>/", views.list_import_detail, name="list-import-detail"),
    path("lists/<int:list_id>/imports/<int:import_id>/progress/", views.list_import_progress, name="list-import-progress"),
    path(
        "lists/<int:list_id>/imports/<int:import_id>/rejected-rows.csv",
        views.list_import_rejections,
        name="list-import-rejections",
    ),
]
