from rest_framework.routers import SimpleRouter

from profiles.api import ListViewSet, ProfileViewSet

router = SimpleRouter()
router.register("profiles", ProfileViewSet, basename="profile")
router.register("lists", ListViewSet, basename="list")

urlpatterns = router.urls
