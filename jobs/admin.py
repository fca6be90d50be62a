"""Admin of background jobs: the list (state, progress bar, kind, times, error), the detail with the
last log lines (refreshing itself while the job runs), cancelling, and one launch form per kind.

Thin wrappers: forms are made from the runners' declared parameters, and every write goes
through `jobs.services`.
"""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from jobs.forms import launch_form_class, launch_params, param_label
from jobs.models import Job
from jobs.paths import MUSTS, PathOutsideRoots, path_listing, path_roots
from jobs.runners import RUNNERS, RunnerError
from jobs.selectors import job_is_active
from jobs.services import JobError, job_cancel, job_create, job_mark_stale

# Seconds between two reloads of a page showing an active job.
REFRESH_SECONDS = 2
# What the message after a launch says for each state the job may already be in.
LAUNCH_MESSAGES = {
    Job.State.QUEUED: (messages.SUCCESS, "Job #{pk} queued; it runs in the background and this page follows it."),
    Job.State.RUNNING: (messages.SUCCESS, "Job #{pk} is running; this page follows it."),
    Job.State.SUCCEEDED: (messages.SUCCESS, "Job #{pk} has already finished."),
    Job.State.FAILED: (messages.ERROR, "Job #{pk} failed at once: {first_error}"),
    Job.State.CANCELLED: (messages.WARNING, "Job #{pk} was cancelled before it could finish."),
}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "state_badge", "progress_bar", "message", "created_by", "created_at",
                    "started_at", "finished_at", "short_error"]
    list_filter = ["state", "kind"]
    search_fields = ["message", "error", "params"]
    actions = ["cancel_selected"]
    fields = ["kind", "state_badge", "progress_bar", "message", "params_table", "result", "error_block", "log_block",
              "cancel_requested", "worker", "celery_task_id", "heartbeat_at", "created_by", "created_at",
              "started_at", "finished_at"]
    readonly_fields = fields
    change_form_template = "admin/jobs/job/change_form.html"
    change_list_template = "admin/jobs/job/change_list.html"

    def has_add_permission(self, request):
        return False  # jobs are launched from the launch forms

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    @admin.display(description="state", ordering="state")
    def state_badge(self, job: Job):
        colours = {"queued": "#777", "running": "#2a6ebb", "succeeded": "#2e7d32", "failed": "#c62828",
                   "cancelled": "#8d6e63"}
        extra = " (cancel requested)" if job.cancel_requested and job_is_active(job) else ""
        return format_html('<b style="color:{}">{}</b>{}', colours.get(job.state, "#000"), job.get_state_display(),
                           extra)

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, job: Job):
        pct = round(100 * (job.progress or 0.0))
        if job_is_active(job) and pct == 0:
            # Nothing measured yet: a moving bar and the job's own words, not a frozen "0%".
            fallback = "waiting to start" if job.state == Job.State.QUEUED else "starting"
            return format_html('<progress max="100" style="width:8em"></progress> {}', job.message or fallback)
        return format_html('<progress value="{}" max="100" style="width:8em"></progress> {}%', pct, pct)

    @admin.display(description="parameters")
    def params_table(self, job: Job):
        """The job's parameters under the launch form's labels (unknown names as they are)."""
        declared = {p.name: p for p in RUNNERS[job.kind].params} if job.kind in RUNNERS else {}
        rows = [(param_label(declared[k]) if k in declared else k, ", ".join(map(str, v)) if isinstance(v, list) else v)
                for k, v in (job.params or {}).items()]
        if not rows:
            return "—"
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="error")
    def short_error(self, job: Job):
        return (job.error.splitlines() or [""])[0][:120]

    @admin.display(description="error")
    def error_block(self, job: Job):
        return format_html('<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>', job.error)

    @admin.display(description="last log lines")
    def log_block(self, job: Job):
        lines = job.log_tail.splitlines()[-50:]
        return format_html('<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>',
                           "\n".join(lines))

    @admin.action(description="Cancel the selected jobs")
    def cancel_selected(self, request, queryset):
        done = 0
        for job in queryset:
            try:
                job_cancel(job=job)
                done += 1
            except JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if done:
            self.message_user(request, f"Cancel asked for {done} job(s).", messages.SUCCESS)

    def get_urls(self):
        own = [
            path("launch/", self.admin_site.admin_view(self.launch_index_view), name="jobs_job_launch"),
            path("launch/<str:kind>/", self.admin_site.admin_view(self.launch_view), name="jobs_job_launch_kind"),
            path("<int:pk>/cancel/", self.admin_site.admin_view(self.cancel_view), name="jobs_job_cancel"),
            path("browse/", self.admin_site.admin_view(self.browse_view), name="jobs_job_browse"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        # Without a beat scheduler nothing else notices a dead worker: look each time the list is read.
        for job in job_mark_stale():
            self.message_user(request, f"Job #{job.pk} marked failed: {job.error}", messages.WARNING)
        active = Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exists()
        extra_context = {**(extra_context or {}), "refresh_seconds": REFRESH_SECONDS if active else None}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        active = job is not None and job_is_active(job)
        extra_context = {
            **(extra_context or {}),
            "refresh_seconds": REFRESH_SECONDS if active else None,
            "can_cancel": active and not job.cancel_requested,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _require_staff(self, request):
        if not (request.user.is_active and request.user.is_staff and self.has_view_permission(request)):
            raise PermissionDenied

    def cancel_view(self, request, pk: int):
        self._require_staff(request)
        job = get_object_or_404(Job, pk=pk)
        if request.method == "POST":
            try:
                job_cancel(job=job)
                self.message_user(request, f"Cancel asked for job #{job.pk}.", messages.SUCCESS)
            except JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def launch_index_view(self, request):
        self._require_staff(request)
        kinds = [
            {"kind": r.kind, "label": Job.Kind(r.kind).label, "help": r.help,
             "url": reverse("admin:jobs_job_launch_kind", args=[r.kind])}
            for r in RUNNERS.values()
        ]
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Launch a job",
                   "kinds": kinds}
        return TemplateResponse(request, "admin/jobs/job/launch_index.html", context)

    def launch_view(self, request, kind: str):
        self._require_staff(request)
        if kind not in RUNNERS:
            raise Http404(f"no job kind {kind!r}")
        form_class = launch_form_class(kind)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = job_create(kind=kind, params=launch_params(form), created_by=request.user, confine_paths=True)
            except (RunnerError, JobError) as exc:
                form.add_error(None, str(exc))
            else:
                job.refresh_from_db()  # say what the job is now, never "launched" about a finished one
                level, text = LAUNCH_MESSAGES[job.state]
                first_error = (job.error.splitlines() or [""])[0]
                self.message_user(request, text.format(pk=job.pk, first_error=first_error), level)
                return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Launch: {Job.Kind(kind).label}", "help": RUNNERS[kind].help, "form": form}
        return TemplateResponse(request, "admin/jobs/job/launch.html", context)

    def browse_view(self, request):
        """The file browser of the path fields: lists one folder inside a configured root."""
        self._require_staff(request)
        group, must = request.GET.get("group", "data"), request.GET.get("must", "any")
        field = request.GET.get("field", "")
        if must not in MUSTS or not field.replace("_", "").replace("-", "").isalnum():
            return HttpResponseBadRequest("bad browser parameters")
        root = request.GET.get("root", "0")
        root_index = int(root) if root.isdigit() else 0
        roots, listing, error = [], None, ""
        try:
            roots = path_roots(group)
            listing = path_listing(group=group, root_index=root_index, folder=request.GET.get("folder") or None)
        except PathOutsideRoots as exc:
            error = str(exc)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Choose a server path",
            "is_popup": True, "listing": listing, "error": error, "roots": list(enumerate(roots)),
            "group": group, "must": must, "field": field, "root_index": root_index,
            "pick_files": must in ("file", "any"), "pick_folders": must in ("dir", "any", "new"),
            "new_folder": must == "new",
        }
        return TemplateResponse(request, "admin/jobs/job/browse.html", context)
