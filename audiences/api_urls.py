from rest_framework.routers import SimpleRouter

from audiences.api import SegmentViewSet

router = SimpleRouter()
router.register("segments", SegmentViewSet, basename="segment")

urlpatterns = router.urls
