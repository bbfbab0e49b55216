from rest_framework.routers import SimpleRouter

from webhooks.api import SubscriptionViewSet

router = SimpleRouter()
router.register("webhooks", SubscriptionViewSet, basename="webhook")

urlpatterns = router.urls
