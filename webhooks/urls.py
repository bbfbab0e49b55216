from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("webhooks/", views.webhook_list, name="list"),
    path("webhooks/<int:subscription_id>/", views.webhook_detail, name="detail"),
    path("webhooks/<int:subscription_id>/test/", views.webhook_test, name="test"),
    path("webhooks/<int:subscription_id>/active/", views.webhook_active, name="active"),
    path("webhooks/<int:subscription_id>/delete/", views.webhook_delete, name="delete"),
]
