"""Staff API routes under /api/admin/: image-sets/ and studies/ (with build/, upload/, state/, items/,
readers/ and responses/)."""
from rest_framework.routers import SimpleRouter

from readerstudy.api.admin_api import ImageSetViewSet, StudyViewSet

router = SimpleRouter(use_regex_path=False)
router.register("image-sets", ImageSetViewSet, basename="admin-image-set")
router.register("studies", StudyViewSet, basename="admin-study")

urlpatterns = router.urls
