"""Reader-facing pages. Thin: parse the request, call a selector or service, render."""
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from readerstudy import selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "readerstudy/home.html", {"studies": selectors.studies_for_reader(user=request.user)})
