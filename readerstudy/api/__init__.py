"""Django REST framework APIs: `reader` (the rating page's API) and `admin` (staff)."""
