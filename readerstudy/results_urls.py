"""Staff-only results pages and exports (filled in by the results views)."""
urlpatterns: list = []
