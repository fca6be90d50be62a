"""Launch forms of the jobs admin, made from the runners' declared parameters (`jobs.runners.Param`).

A parameter's `kind` picks its field: image sets and users are chosen from lists, server paths from a
file browser limited to the configured roots (and checked again on the server), fixed choices from a
menu; labels are words, not parameter names. The form only parses: `job_create` does the rest.
"""
import re

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from jobs.paths import PathOutsideRoots, path_confine
from jobs.runners import RUNNERS, Param
from readerstudy.models import ImageSet

# Words a parameter name is made of that are not English words.
_ACRONYMS = {"ema": "EMA", "lr": "learning rate", "mpp": "MPP", "id": "ID", "cfg": "CFG", "npz": "NPZ"}


def param_label(param: Param) -> str:
    """The parameter's label, or its name in words ("n_per_synthetic" -> "N per synthetic")."""
    if param.label:
        return param.label
    words = [_ACRONYMS.get(w, w) for w in param.name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _image_set_choices(kind_filter: str) -> list[tuple[str, str]]:
    sets = ImageSet.objects.annotate(n=Count("images")).order_by("name")
    if kind_filter:
        sets = sets.filter(kind=kind_filter)
    return [(s.name, f"{s.name} ({s.generator}, {s.n} images)") for s in sets]


def _user_choices() -> list[tuple[str, str]]:
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [(u.username, u.username) for u in users]


class PathBrowserWidget(forms.TextInput):
    """A read-only path box filled by the file browser (a pop-up page listing the allowed folders)."""

    def __init__(self, *, group: str, must: str, attrs=None):
        super().__init__(attrs={"readonly": "readonly", "size": 70, "class": "vTextField path-field", **(attrs or {})})
        self.group, self.must = group, must

    def render(self, name, value, attrs=None, renderer=None):
        box = super().render(name, value, attrs, renderer)
        field_id = (attrs or {}).get("id") or f"id_{name}"
        url = reverse("admin:jobs_job_browse") + f"?group={self.group}&must={self.must}&field={field_id}"
        return format_html(
            '{} <a href="{}" class="button path-browse" data-field="{}" '
            "onclick=\"window.open(this.href, 'path-browser', 'width=720,height=600'); return false;\">Browse…</a>"
            ' <a href="#" class="path-clear" onclick="document.getElementById(\'{}\').value=\'\'; return false;">clear</a>',
            box, url, field_id, field_id,
        )


class ConfinedPathField(forms.CharField):
    """A server path that must lie inside the roots of `group` (symbolic links and `..` resolved)."""

    def __init__(self, *, group: str, must: str, **kwargs):
        self.group, self.must = group, must
        super().__init__(max_length=4096, widget=PathBrowserWidget(group=group, must=must), **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return value
        try:
            return str(path_confine(value, group=self.group, must=self.must, field=self.label or "path"))
        except PathOutsideRoots as exc:
            raise forms.ValidationError(str(exc)) from None


class SuggestionsInput(forms.TextInput):
    """A text box with a list of suggestions (choices with a `<placeholder>` such as "timm:<model>")."""

    def __init__(self, *, suggestions: tuple, list_id: str):
        super().__init__(attrs={"list": list_id, "size": 40})
        self.suggestions, self.list_id = suggestions, list_id

    def render(self, name, value, attrs=None, renderer=None):
        options = format_html_join(
            "", '<option value="{}"></option>', ((re.sub(r"<[^>]*>", "", str(c)),) for c in self.suggestions)
        )  # safe HTML: joined as plain text, the page would show the tags instead of a list
        return format_html('{}<datalist id="{}">{}</datalist>', super().render(name, value, attrs, renderer),
                           self.list_id, options)


def field_for(param: Param) -> forms.Field:
    """The form field of one declared parameter."""
    common = {"required": param.required, "help_text": param.help, "label": param_label(param)}
    kind, _, kind_arg = param.kind.partition(":")
    if kind == "image_set":
        return forms.ChoiceField(choices=[("", "---------")] + _image_set_choices(kind_arg), **common)
    if kind == "image_sets":
        return forms.MultipleChoiceField(
            choices=_image_set_choices(kind_arg), widget=forms.CheckboxSelectMultiple, **common
        )
    if kind == "users":
        return forms.MultipleChoiceField(choices=_user_choices(), widget=forms.CheckboxSelectMultiple, **common)
    if param.path_spec is not None:
        group, must = param.path_spec
        return ConfinedPathField(group=group, must=must, initial=param.default, **common)
    if param.choices and any("<" in str(c) for c in param.choices):
        hint = "one of " + ", ".join(map(str, param.choices))
        return forms.CharField(
            initial=param.default, max_length=200,
            widget=SuggestionsInput(suggestions=param.choices, list_id=f"choices-{param.name}"),
            **{**common, "help_text": f"{param.help} ({hint})" if param.help else hint},
        )
    if param.choices:
        blank = [] if param.required or param.default is not None else [("", "(default)")]
        return forms.ChoiceField(choices=blank + [(c, c) for c in param.choices], initial=param.default, **common)
    if param.type is bool and param.default is None:
        # No default of its own: an unticked box would override the function's default, so ask three ways.
        widget = forms.Select(choices=[("unknown", "(default)"), ("true", "Yes"), ("false", "No")])
        return forms.NullBooleanField(widget=widget, **{**common, "required": False})
    if param.type is bool:
        return forms.BooleanField(initial=bool(param.default), **{**common, "required": False})
    if param.type is int:
        return forms.IntegerField(initial=param.default, **common)
    if param.type is float:
        return forms.FloatField(initial=param.default, **common)
    if param.type is list:
        return forms.CharField(initial=param.default, max_length=1000,
                               **{**common, "help_text": f"{param.help} (comma-separated)".strip()})
    return forms.CharField(initial=param.default, max_length=1000, **common)


def launch_form_class(kind: str) -> type[forms.Form]:
    """A form with one field per declared parameter of the kind's runner (choices read when it is made)."""
    fields = {p.name: field_for(p) for p in RUNNERS[kind].params}
    return type(f"Launch{kind.title().replace('_', '')}Form", (forms.Form,), fields)


def launch_params(form: forms.Form) -> dict:
    """The job parameters of a valid launch form: empty fields are left to the runner's defaults."""
    return {k: v for k, v in form.cleaned_data.items() if v not in (None, "", [])}
