"""Admin forms for building, uploading and assigning: they parse input into service arguments, nothing more."""
from django import forms
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.db.models import Count

from readerstudy.models import DEFAULT_CONFIDENCE_LABELS, ImageSet, Study, Truth
from readerstudy.services.building import SetCount
from readerstudy.services.studies import StudyError, study_settings_validate

N_SYNTHETIC_SLOTS = 3


class ImageSetChoiceField(forms.ModelChoiceField):
    """Image sets of one kind, shown with their generator and size."""

    def __init__(self, *, kind: str, **kwargs):
        queryset = ImageSet.objects.filter(kind=kind).annotate(n_images=Count("images")).order_by("name")
        super().__init__(queryset=queryset, **kwargs)

    def label_from_instance(self, obj: ImageSet) -> str:
        return f"{obj.name} ({obj.generator}, {obj.n_images} images)"


class StudySettingsForm(forms.Form):
    """The per-study settings shared by building and uploading."""

    name = forms.CharField(max_length=150)
    seed = forms.IntegerField(initial=0, help_text="Same seed, same draw and same reader orders.")
    repeats = forms.IntegerField(
        min_value=0, initial=0,
        help_text="Main items shown a second time (consistency); a repeat's file is byte-identical to its original's.",
    )
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False,
        initial=Study._meta.get_field("instructions").default, help_text="Shown before the first image.",
    )
    confidence_min = forms.IntegerField(min_value=0, initial=1)
    confidence_max = forms.IntegerField(min_value=1, initial=5)
    confidence_labels = forms.CharField(
        required=False, initial=", ".join(DEFAULT_CONFIDENCE_LABELS),
        help_text="Comma-separated, lowest first, one per level; empty for numbers only.",
    )
    allow_revision = forms.BooleanField(required=False, help_text="Readers may change an answer they gave.")
    blinded_size = forms.RegexField(
        regex=r"^\s*\d+\s*[xX]\s*\d+\s*$", required=False,
        help_text="WIDTHxHEIGHT of the blinded images, e.g. 128x128; empty: the most common size.",
    )
    harmonisation = forms.ChoiceField(
        choices=Study.Harmonisation.choices, initial=Study.Harmonisation.NONE, required=False,
        help_text="Put every source image through the same low-level history (see the confound audit).",
    )

    def study_arguments(self) -> dict:
        """Keyword arguments for `study_build` / `study_import` (after `is_valid()`)."""
        data = self.cleaned_data
        kwargs = {
            "name": data["name"],
            "seed": data["seed"],
            "repeats": data["repeats"],
            "instructions": data["instructions"],
            "confidence_min": data["confidence_min"],
            "confidence_max": data["confidence_max"],
            "confidence_labels": [x.strip() for x in data["confidence_labels"].split(",") if x.strip()],
            "allow_revision": data["allow_revision"],
            "harmonisation": data["harmonisation"] or Study.Harmonisation.NONE,
        }
        if data["blinded_size"]:
            kwargs["blinded_size"] = tuple(int(v) for v in data["blinded_size"].lower().split("x"))
        return kwargs


class StudyBuildForm(StudySettingsForm):
    """A real set and up to three synthetic sets, each with a count."""

    real_set = ImageSetChoiceField(kind=Truth.REAL)
    real_count = forms.IntegerField(min_value=1)
    practice = forms.IntegerField(min_value=0, initial=0, help_text="Practice items shown first, with feedback.")

    field_order = ["name", "real_set", "real_count"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for k in range(1, N_SYNTHETIC_SLOTS + 1):
            self.fields[f"synthetic_set_{k}"] = ImageSetChoiceField(kind=Truth.SYNTHETIC, required=(k == 1))
            self.fields[f"synthetic_count_{k}"] = forms.IntegerField(min_value=1, required=(k == 1))
        self.order_fields(
            ["name", "real_set", "real_count"]
            + [f"synthetic_{w}_{k}" for k in range(1, N_SYNTHETIC_SLOTS + 1) for w in ("set", "count")]
            + ["practice"]
        )

    def clean(self):
        data = super().clean()
        for k in range(1, N_SYNTHETIC_SLOTS + 1):
            chosen, count = data.get(f"synthetic_set_{k}"), data.get(f"synthetic_count_{k}")
            if (chosen is None) != (count is None) and f"synthetic_set_{k}" not in self.errors:
                self.add_error(f"synthetic_count_{k}", "Give both a synthetic set and its count, or neither.")
        return data

    def study_arguments(self) -> dict:
        data = self.cleaned_data
        synthetic = [
            SetCount(data[f"synthetic_set_{k}"], data[f"synthetic_count_{k}"])
            for k in range(1, N_SYNTHETIC_SLOTS + 1)
            if data.get(f"synthetic_set_{k}") is not None
        ]
        return {
            **super().study_arguments(),
            "real": SetCount(data["real_set"], data["real_count"]),
            "synthetic": synthetic,
            "practice": data["practice"],
        }


class StudyUploadForm(StudySettingsForm):
    archive = forms.FileField(help_text="A zip of images with manifest.csv: filename,truth,generator,label.")

    field_order = ["name", "archive"]

    def study_arguments(self) -> dict:
        return {**super().study_arguments(), "archive": self.cleaned_data["archive"]}


class UserChoiceField(forms.ModelMultipleChoiceField):
    def _check_values(self, value):
        # An id beyond the database's integer range would overflow the driver (a 500): refuse it first.
        for pk in value if isinstance(value, (list, tuple)) else ():
            if str(pk).isdigit() and int(str(pk)[:30]) > 2**63 - 1:
                raise forms.ValidationError(self.error_messages["invalid_pk_value"], code="invalid_pk_value",
                                            params={"pk": str(pk)[:30]})
        return super()._check_values(value)


class AssignReadersForm(forms.Form):
    users = UserChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        widget=FilteredSelectMultiple("readers", is_stacked=False),
    )


class StudyChangeForm(forms.ModelForm):
    """The admin's change form of a study: its settings are checked like a new study's."""

    class Meta:
        model = Study
        fields = "__all__"
        labels = {"break_every": "Break reminder every", "microns_per_pixel": "Microns per pixel (µm/px)"}
        help_texts = {
            "break_every": "A gentle break reminder after every so many answered images; 0: none.",
            "microns_per_pixel": "Of the shown images, for the viewer's scale bar (one value for the whole study, "
                                 "so it cannot tell real from synthetic); empty: no scale bar.",
            "equivalence_margin": "Half-width around AUC 0.5 within which readers count as unable to tell "
                                  "(two one-sided tests in the results), e.g. 0.05.",
        }

    def clean(self):
        data = super().clean()
        scale = {k: data[k] for k in ("confidence_min", "confidence_max", "confidence_labels") if k in data}
        if "confidence_labels" in scale and scale["confidence_labels"] is None:
            scale["confidence_labels"] = []
        try:
            study_settings_validate(**scale)
        except StudyError as exc:
            raise forms.ValidationError(str(exc)) from exc
        margin = data.get("equivalence_margin")
        if margin is not None and not 0 < margin < 0.5:
            self.add_error("equivalence_margin", f"{margin}: the margin around AUC 0.5 must lie between 0 and 0.5")
        mpp = data.get("microns_per_pixel")
        if mpp is not None and mpp <= 0:
            self.add_error("microns_per_pixel", f"{mpp}: microns per pixel must be positive (or empty: no scale bar)")
        return data
