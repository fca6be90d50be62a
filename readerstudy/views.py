"""Reader-facing pages and the blinded image. Thin: parse the request, call a selector or service, render.

- `home`: the studies assigned to the user, with progress;
- `study_intro`: the study's instructions, confidence scale and keyboard shortcuts, then start or resume;
- `study_rate`: the rating page, an empty shell filled by static/js/rate.js through the reader API;
- `study_finish`: the thank-you page;
- `item_image`: a blinded study image, by its unguessable token only.

Blinding: no page names an item; the image answers with the same headers for every item (one
content type, no file name, no validators derived from the source, private caching) and 404 for
anyone who may not see it, so that a token's existence is not revealed either. The image is one
indexed query, its bytes then come from a per-process cache (readerstudy.blinded_images); its URL (the token) never changes, so the browser may keep it
privately and never revalidate ("private, immutable": shared caches and proxies may not).
"""
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from readerstudy import selectors
from readerstudy.blinded_images import blinded_image_response


def _assignment_or_404(request: HttpRequest, study_id: int):
    assignment = selectors.reader_assignment_get(user=request.user, study_id=study_id)
    if assignment is None:
        raise Http404("No such study.")
    return assignment


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "readerstudy/home.html", {"studies": selectors.reader_study_summaries(user=request.user)})


@login_required
def study_intro(request: HttpRequest, study_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, study_id)
    progress = selectors.assignment_progress(assignment=assignment)
    study = assignment.study
    scale = selectors.study_confidence_scale(study=study)
    return render(
        request,
        "readerstudy/study_intro.html",
        {"study": study, "progress": progress, "scale": scale, "assignment": assignment},
    )


@login_required
def study_rate(request: HttpRequest, study_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, study_id)
    study = assignment.study
    progress = selectors.assignment_progress(assignment=assignment)
    if progress.next_index is None:
        return redirect("study-finish", study_id=study.pk)
    scale = selectors.study_confidence_scale(study=study)
    return render(
        request,
        "readerstudy/study_rate.html",
        {"study": study, "scale": scale, "config": selectors.rating_page_config(study=study)},
    )


@login_required
def study_finish(request: HttpRequest, study_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, study_id)
    progress = selectors.assignment_progress(assignment=assignment)
    return render(
        request, "readerstudy/study_finish.html", {"study": assignment.study, "progress": progress}
    )


# The same for every item: nothing in it depends on the image or its source.
IMAGE_CACHE_CONTROL = "private, max-age=86400, immutable"


@require_GET
def item_image(request: HttpRequest, token: str) -> HttpResponse:
    item = selectors.item_image_visible_to(user=request.user, token=token)
    if item is None:
        raise Http404("No such image.")
    # From this process's cache of blinded bytes, or handed to the front server (READER_IMAGE_SENDFILE);
    # never a FileResponse, which would name the stored file.
    response = blinded_image_response(item)
    response["Cache-Control"] = IMAGE_CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response
