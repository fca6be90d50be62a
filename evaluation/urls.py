"""URL patterns of this app's staff API (filled in by its views)."""
urlpatterns: list = []
