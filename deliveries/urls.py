from django.urls import path

from deliveries import views

app_name = "deliveries"

urlpatterns = [
    path("deliveries/new/", views.delivery_new, name="delivery-new"),
    path("deliveries/<int:delivery_id>/edit/", views.delivery_edit, name="delivery-edit"),
    path("deliveries/<int:delivery_id>/links/", views.delivery_links, name="delivery-links"),
    path("deliveries/<int:delivery_id>/preview/", views.delivery_preview, name="delivery-preview"),
    path("deliveries/<int:delivery_id>/preview/frame/", views.delivery_preview_frame, name="delivery-preview-frame"),
    path("deliveries/<int:delivery_id>/proof/", views.delivery_proof, name="delivery-proof"),
    path("deliveries/<int:delivery_id>/schedule/", views.delivery_schedule, name="delivery-schedule"),
    path("deliveries/<int:delivery_id>/actions/<str:action>/", views.delivery_action, name="delivery-action"),
]
