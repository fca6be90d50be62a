"""URL patterns of the reader API, mounted at /api/reader/."""
from django.urls import path

from readerstudy.api import reader_api

urlpatterns = [
    path("studies/", reader_api.ReaderStudyListApi.as_view(), name="reader-api-studies"),
    path("studies/<int:study_id>/next/", reader_api.ReaderNextItemApi.as_view(), name="reader-api-next"),
    path("studies/<int:study_id>/responses/", reader_api.ReaderResponseApi.as_view(), name="reader-api-responses"),
    path("studies/<int:study_id>/items/<str:token>/flag/", reader_api.ReaderItemFlagApi.as_view(),
         name="reader-api-flag"),
]
