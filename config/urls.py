"""URL map: the reader pages and API (readerstudy), the admin, the OpenAPI schema and its docs pages (staff
only: SPECTACULAR_SETTINGS SERVE_PERMISSIONS), login and logout."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    # The reader's pages, images and API first: Django tries the patterns in order, and these serve
    # nearly every request (an answer and its image), so they are resolved without walking the rest.
    # None of them shadows a pattern below (their first path segments differ).
    path("api/reader/", include("readerstudy.api.reader_urls")),
    path("", include("readerstudy.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/admin/", include("readerstudy.api.admin_urls")),
    path("api/admin/", include("readerstudy.api.results_urls")),
    path("api/admin/", include("evaluation.urls")),
    path("api/admin/", include("jobs.urls")),
    path("results/", include("readerstudy.results_urls")),
]

# Media is never served as static files: readers get blinded images only through the
# token view (readerstudy.views.item_image), staff get source images through the admin.
