"""Staff API for results and CSV exports (filled in by the results module)."""
urlpatterns: list = []
