"""Signing in and out of Beacon's pages, in Beacon's look (the admin keeps its own sign-in page)."""
from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="accounts/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    # POST only (Django's LogoutView): a link or an image elsewhere cannot sign anyone out.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
