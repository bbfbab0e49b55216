from django.urls import path

from deliveries import views

app_name = "deliveries"

urlpatterns = [
    path("deliveries/<int:delivery_id>/actions/<str:action>/", views.delivery_action, name="delivery-action"),
]
