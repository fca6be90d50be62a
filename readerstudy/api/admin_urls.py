"""URL patterns (filled in by the API module)."""
urlpatterns: list = []
