"""Django admin of the reader study: image sets, studies (build, upload, assign, open/close, per-reader
progress, removing one reader's answers), items, readers with their progress, and responses; and the
admin site's branding (HistoSynth, with links to Results and the API docs in templates/admin/base_site.html).

Thin: rows are created only through the services (`study_build`, `study_import`,
`study_assign_readers`, `study_set_state`); the admin pages parse a form, call one of them and
report the result or every problem it found.
"""
import functools

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from jobs.models import Job
from readerstudy.forms import AssignReadersForm, StudyBuildForm, StudyChangeForm, StudyUploadForm
from readerstudy.models import Image, ImageSet, ItemFlag, Response, Study, StudyItem, StudyReader
from readerstudy.selectors import reader_label, study_reader_progress
from readerstudy.services.reader_answers import study_reader_answers_remove
from readerstudy.services.building import study_build
from readerstudy.services.imagesets import image_content_type
from readerstudy.services.imports import StudyImportError, study_import_or_queue
from readerstudy.services.studies import StudyError, study_assign_readers, study_set_state

admin.site.site_header = "HistoSynth administration"
admin.site.site_title = "HistoSynth admin"
admin.site.index_title = "Studies, image sets and jobs"
# Characters of a study's name shown beside a pseudonym in the response list.
STUDY_NAME_IN_LIST = 20

def _progress_bar(answered: int, total: int) -> str:
    percent = round(100 * answered / total) if total else 0
    return format_html(
        '<progress value="{}" max="{}" title="{}%"></progress> {} / {}', answered, total or 1, percent, answered, total
    )


@admin.register(ImageSet)
class ImageSetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "generator", "n_images", "labels", "created_at")
    list_filter = ("kind", "generator")
    search_fields = ("name", "generator", "description")
    readonly_fields = ("kind", "generator", "provenance", "created_at", "n_images", "labels")
    fields = ("name", "description", "kind", "generator", "n_images", "labels", "provenance", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_n_images=Count("images"))

    def has_add_permission(self, request):
        return False  # image sets come from patch extraction, sampling, register_image_set or an upload

    @admin.display(description="images", ordering="_n_images")
    def n_images(self, obj: ImageSet) -> int:
        return obj._n_images if hasattr(obj, "_n_images") else obj.images.count()

    @admin.display(description="labels (count)")
    def labels(self, obj: ImageSet) -> str:
        counts = obj.images.values("label").annotate(n=Count("id")).order_by("label")
        return ", ".join(f"{c['label'] or '(none)'} ({c['n']})" for c in counts)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("original_name", "image_set", "label", "width", "height", "format", "short_sha256", "thumbnail")
    list_filter = ("image_set__kind", "image_set__generator", "label", "image_set")
    search_fields = ("original_name", "sha256", "image_set__name")
    list_select_related = ("image_set",)
    readonly_fields = [f.name for f in Image._meta.fields] + ["thumbnail"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("<int:image_id>/file/", self.admin_site.admin_view(self.file_view), name="readerstudy_image_file"),
        ] + super().get_urls()

    def file_view(self, request: HttpRequest, image_id: int) -> FileResponse:
        """The source file, for staff only (media are not served publicly in production)."""
        image = get_object_or_404(Image, pk=image_id)
        if not self.has_view_permission(request, image):
            raise PermissionDenied
        # The type is sniffed from the bytes, never taken from the name: only a verified image is shown
        # inline, anything else (say, a PNG stored as `.html`) is a download the browser must not run.
        content_type = image_content_type(image.file)
        response = FileResponse(
            image.file.open("rb"), content_type=content_type or "application/octet-stream",
            as_attachment=content_type is None, filename=f"image-{image.pk}.bin" if content_type is None else None,
        )
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @admin.display(description="sha256")
    def short_sha256(self, obj: Image) -> str:
        return obj.sha256[:12]

    @admin.display(description="image")
    def thumbnail(self, obj: Image) -> str:
        url = reverse("admin:readerstudy_image_file", args=[obj.pk])
        return format_html('<img src="{}" width="64" height="64" style="image-rendering:pixelated">', url)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "n_main", "n_practice", "n_repeat", "n_readers", "progress", "created_at",
                    "results_link")
    list_filter = ("state",)
    search_fields = ("name",)
    readonly_fields = ("state", "seed", "harmonisation", "provenance", "created_at")
    fields = (
        "name", "state", "instructions", "confidence_min", "confidence_max", "confidence_labels",
        "allow_revision", "break_every", "microns_per_pixel", "equivalence_margin", "harmonisation", "seed",
        "provenance", "created_at",
    )
    form = StudyChangeForm
    actions = ["open_studies", "close_studies", "draft_studies", "assign_readers"]
    change_list_template = "admin/readerstudy/study/change_list.html"
    change_form_template = "admin/readerstudy/study/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _n_main=Count("items", filter=Q(items__role=StudyItem.Role.MAIN), distinct=True),
            _n_practice=Count("items", filter=Q(items__role=StudyItem.Role.PRACTICE), distinct=True),
            _n_repeat=Count("items", filter=Q(items__role=StudyItem.Role.REPEAT), distinct=True),
            _n_readers=Count("assignments", distinct=True),
            _n_responses=Count("assignments__responses", distinct=True),
        )

    def get_readonly_fields(self, request, obj=None):
        fixed = list(self.readonly_fields)
        if obj is not None and Response.objects.filter(item__study=obj).exists():
            fixed += ["confidence_min", "confidence_max", "confidence_labels"]  # answers were given on this scale
        return fixed

    @admin.display(description="main", ordering="_n_main")
    def n_main(self, obj):
        return obj._n_main

    @admin.display(description="practice", ordering="_n_practice")
    def n_practice(self, obj):
        return obj._n_practice

    @admin.display(description="repeats", ordering="_n_repeat")
    def n_repeat(self, obj):
        return obj._n_repeat

    @admin.display(description="readers", ordering="_n_readers")
    def n_readers(self, obj):
        return obj._n_readers

    @admin.display(description="results")
    def results_link(self, obj):
        return format_html('<a href="{}">Results</a>', reverse("results-study", args=[obj.pk]))

    @admin.display(description="answers given")
    def progress(self, obj):
        total = obj._n_readers * (obj._n_main + obj._n_practice + obj._n_repeat)
        return _progress_bar(obj._n_responses, total)

    # --- state actions ---------------------------------------------------------------------------

    def _set_state(self, request, queryset, state: str):
        for study in queryset:
            study_set_state(study=study, state=state)
        self.message_user(request, f"{queryset.count()} study(ies) now {state}.", messages.SUCCESS)

    @admin.action(description="Open the selected studies for their readers")
    def open_studies(self, request, queryset):
        self._set_state(request, queryset, Study.State.OPEN)

    @admin.action(description="Close the selected studies (no more answers)")
    def close_studies(self, request, queryset):
        self._set_state(request, queryset, Study.State.CLOSED)

    @admin.action(description="Put the selected studies back to draft (hidden from readers)")
    def draft_studies(self, request, queryset):
        self._set_state(request, queryset, Study.State.DRAFT)

    @admin.action(description="Assign readers to the selected study…")
    def assign_readers(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one study to assign readers to.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:readerstudy_study_assign", args=[queryset.get().pk]))

    # --- build, upload and assign pages ------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("build/", wrap(self.build_view), name="readerstudy_study_build"),
            path("upload/", wrap(self.upload_view), name="readerstudy_study_upload"),
            path("<int:study_id>/assign/", wrap(self.assign_view), name="readerstudy_study_assign"),
            path("<int:study_id>/readers/<int:assignment_id>/remove-answers/", wrap(self.remove_answers_view),
                 name="readerstudy_study_remove_answers"),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        study = self.get_object(request, object_id)
        if study is not None:
            extra_context = {**(extra_context or {}), "reader_progress": study_reader_progress(study=study)}
        return super().change_view(request, object_id, form_url, extra_context)

    def remove_answers_view(self, request: HttpRequest, study_id: int, assignment_id: int) -> HttpResponse:
        """Confirm, then remove one reader's answers; the admin's history of the study records it."""
        study = get_object_or_404(Study, pk=study_id)
        if not self.has_change_permission(request, study):
            raise PermissionDenied
        assignment = get_object_or_404(StudyReader.objects.select_related("user", "study"), pk=assignment_id,
                                       study=study)
        who = f"{reader_label(assignment=assignment)} ({assignment.user})"
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            removed = study_reader_answers_remove(assignment=assignment)
            text = f"Removed the answers of {who}: {removed.describe()}."
            self.log_change(request, study, text)  # the study's History page lists it with who and when
            self.message_user(request, text, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:readerstudy_study_change", args=[study.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": study,
            "title": f"Remove the answers of {who}?",
            "who": who,
            "n_answers": assignment.responses.count(),
            "n_flags": assignment.flags.count(),
            "state": study.get_state_display(),
        }
        return TemplateResponse(request, "admin/readerstudy/study/remove_answers.html", context)

    def add_view(self, request, form_url="", extra_context=None):
        # A study is made from image sets or an archive, never typed in.
        return HttpResponseRedirect(reverse("admin:readerstudy_study_build"))

    def build_view(self, request: HttpRequest) -> HttpResponse:
        return self._make_study_view(request, StudyBuildForm, study_build, "Build a study from image sets")

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        # A large archive becomes an import job (the service returns the Job): followed on the job's page.
        upload = functools.partial(study_import_or_queue, created_by=request.user)
        return self._make_study_view(request, StudyUploadForm, upload, "Upload a study archive")

    def _make_study_view(self, request, form_class, service, title: str) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        problems: list[str] = []
        if request.method == "POST":
            form = form_class(request.POST, request.FILES)
            if form.is_valid():
                try:
                    study = service(**form.study_arguments())
                except StudyImportError as exc:
                    problems = exc.problems
                except StudyError as exc:
                    problems = [str(exc)]
                else:
                    if isinstance(study, Job):
                        self.message_user(request, f"Large archive: importing in the background (job {study.pk}).")
                        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[study.pk]))
                    self.message_user(
                        request, f"Study {study.name!r} created with {study.items.count()} items (draft).",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:readerstudy_study_change", args=[study.pk]))
            for field_name, upload in request.FILES.items():
                # A browser never keeps a chosen file across a reload: say so, by name, at the field.
                if field_name in form.fields:
                    form.add_error(field_name, f"Choose {upload.name} again (a browser does not keep a chosen "
                                               "file after an error), or another file.")
        else:
            form = form_class()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
            "problems": problems,
            "multipart": form.is_multipart(),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/readerstudy/study/study_form.html", context)

    def assign_view(self, request: HttpRequest, study_id: int) -> HttpResponse:
        study = get_object_or_404(Study, pk=study_id)
        if not self.has_change_permission(request, study):
            raise PermissionDenied
        if request.method == "POST":
            form = AssignReadersForm(request.POST)
            if form.is_valid():
                users = list(form.cleaned_data["users"])
                try:
                    assignments = study_assign_readers(study=study, users=users)
                except StudyError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    names = ", ".join(f"{a.user} ({a.pseudonym})" for a in assignments)
                    self.message_user(request, f"Readers of {study.name!r}: {names}.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:readerstudy_study_change", args=[study.pk]))
        else:
            form = AssignReadersForm(initial={"users": list(study.readers.all())})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": study,
            "title": f"Assign readers to {study.name}",
            "form": form,
            "problems": [],
            "multipart": False,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/readerstudy/study/study_form.html", context)


@admin.register(StudyItem)
class StudyItemAdmin(admin.ModelAdmin):
    list_display = ("short_token", "study", "role", "truth", "generator", "label", "image", "thumbnail")
    list_filter = ("study", "role", "truth", "generator", "label")
    search_fields = ("token", "study__name", "image__original_name")
    list_select_related = ("study", "image", "image__image_set")
    readonly_fields = [f.name for f in StudyItem._meta.fields] + ["thumbnail"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="token")
    def short_token(self, obj: StudyItem) -> str:
        return obj.token[:10] + "…"

    @admin.display(description="blinded image")
    def thumbnail(self, obj: StudyItem) -> str:
        url = reverse("item-image", kwargs={"token": obj.token})
        return format_html('<img src="{}" width="64" height="64" style="image-rendering:pixelated">', url)


@admin.register(StudyReader)
class StudyReaderAdmin(admin.ModelAdmin):
    list_display = ("reader", "user", "progress", "assigned_at", "finished_at")
    list_filter = ("study", "study__state")
    search_fields = ("user__username", "study__name", "pseudonym")
    list_select_related = ("user", "study")
    readonly_fields = ("study", "user", "pseudonym", "progress", "assigned_at", "finished_at")
    exclude = ("item_order",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_answered=Count("responses"))

    def has_add_permission(self, request):
        return False  # assign through the study's "Assign readers" page, which draws the reader's order

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress", ordering="_answered")
    def progress(self, obj: StudyReader) -> str:
        return _progress_bar(obj._answered, len(obj.item_order))

    @admin.display(description="reader", ordering="study__name")
    def reader(self, obj: StudyReader) -> str:
        return reader_label(assignment=obj)


class ReaderFilter(admin.SimpleListFilter):
    """Answers of one reader of one study, listed as "Study · R01" (narrowed to the chosen study)."""

    title = "reader"
    parameter_name = "reader"

    def lookups(self, request, model_admin):
        readers = StudyReader.objects.select_related("study").order_by("study__name", "pseudonym")
        study_id = request.GET.get("assignment__study__id__exact")
        if study_id and study_id.isdigit():
            readers = readers.filter(study_id=int(study_id))
        return [(a.pk, reader_label(assignment=a)) for a in readers]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(assignment_id=int(value)) if value and value.isdigit() else queryset


class _ReaderRowAdmin(admin.ModelAdmin):
    """Read-only rows a reader made about an item (answers, flags): listed by "Study · R01", item and truth."""

    list_select_related = ("assignment", "assignment__study", "item")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="reader", ordering="assignment__study__name")
    def reader(self, obj) -> str:
        # Long study names are cut in the list (the full label is the hover title) so a row stays one line.
        study = obj.assignment.study.name
        short = study if len(study) <= STUDY_NAME_IN_LIST else study[: STUDY_NAME_IN_LIST - 1] + "…"
        return format_html('<span title="{}">{} · {}</span>', reader_label(assignment=obj.assignment), short,
                           obj.assignment.pseudonym)

    @admin.display(description="item")
    def item_token(self, obj) -> str:
        return obj.item.token[:8] + "…"

    @admin.display(description="truth")
    def truth(self, obj) -> str:
        return obj.item.truth


_BY_STUDY_AND_READER = (("assignment__study", admin.RelatedOnlyFieldListFilter), ReaderFilter)


@admin.register(Response)
class ResponseAdmin(_ReaderRowAdmin):
    list_display = (
        "reader", "item_token", "role", "truth", "answer", "correct", "confidence", "seconds_short",
        "answered", "revised",
    )
    list_filter = (*_BY_STUDY_AND_READER, "answer", "item__truth", "item__role", "confidence")
    search_fields = ("assignment__pseudonym", "assignment__user__username", "item__token", "assignment__study__name")
    readonly_fields = [f.name for f in Response._meta.fields]
    change_list_template = "admin/readerstudy/response/change_list.html"

    @admin.display(description="role")
    def role(self, obj: Response) -> str:
        return obj.item.role

    @admin.display(description="correct", boolean=True)
    def correct(self, obj: Response) -> bool:
        return obj.answer == obj.item.truth

    @admin.display(description="seconds", ordering="seconds")
    def seconds_short(self, obj: Response) -> str:
        return "" if obj.seconds is None else f"{obj.seconds:.1f}"

    @admin.display(description="answered at", ordering="answered_at")
    def answered(self, obj: Response) -> str:
        return _short_time(obj.answered_at)

    @admin.display(description="revised at", ordering="revised_at")
    def revised(self, obj: Response) -> str:
        return _short_time(obj.revised_at)


@admin.register(ItemFlag)
class ItemFlagAdmin(_ReaderRowAdmin):
    """Readers' flags on images ("something is wrong with this image"): they never change an answer."""

    list_display = ("reader", "item_token", "truth", "generator", "comment", "flagged")
    list_filter = (*_BY_STUDY_AND_READER, "item__truth", "item__generator")
    search_fields = ("comment", "assignment__pseudonym", "assignment__study__name", "item__token")
    readonly_fields = [f.name for f in ItemFlag._meta.fields]

    @admin.display(description="generator")
    def generator(self, obj: ItemFlag) -> str:
        return obj.item.generator

    @admin.display(description="flagged at", ordering="created_at")
    def flagged(self, obj: ItemFlag) -> str:
        return _short_time(obj.created_at)


def _short_time(moment) -> str:
    """A time on one line in the site's time zone: 2026-03-01 14:05:09."""
    return "" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
