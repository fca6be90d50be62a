"""What each kind of job runs: a registry from `Job.Kind` to a plain `callable(params, reporter)`.

Each runner declares its parameters (`Param`: name, type, default, help; the admin's launch form
and the API's validation are made from them) and calls its owner's plain function: the diffusion
and ProGAN trainers, sampling, patch extraction, the metrics and the study builder. The owners'
modules are imported inside the runner, so that a module missing from a build gives the job a
clear error ("... is not available in this installation") instead of breaking the import of jobs.
"""
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.models import Job
from readerstudy.models import Study


class RunnerError(ValueError):
    """Bad job parameters, or a function this installation lacks; the message names the field."""


@dataclass(frozen=True)
class Param:
    """One parameter of a runner. `kind` says what a string names, so forms offer choices, not free text:

    - "" : plain value of `type`; with `choices`, one of them. A choice with a `<placeholder>` (such as
      "timm:<model>") accepts its prefix followed by any non-empty text;
    - "image_set[:real|:synthetic]" : the name of an image set (of that kind);
    - "image_sets[:real|:synthetic]" : names of image sets (`type` list);
    - "users" : usernames of active users (`type` list);
    - "path:<group>[:<must>]" : a server path inside the roots of `group` (data, weights; see
      `jobs.paths`), `must` being file, dir, any (default) or new (an output folder).
    """

    name: str
    type: type = str  # str, int, float, bool, list (a list of strings)
    required: bool = False
    default: Any = None
    help: str = ""
    choices: tuple = ()
    kind: str = ""
    label: str = ""  # the form's label; default: the name in words
    # A further check of a (coerced) value beyond `choices`: the problem in words, or None when fine.
    check: Callable[[Any], str | None] | None = None

    @property
    def path_spec(self) -> tuple[str, str] | None:
        """(group, must) of a path parameter, else None."""
        if not self.kind.startswith("path:"):
            return None
        parts = self.kind.split(":")
        return parts[1], (parts[2] if len(parts) > 2 else "any")

    def accepts(self, value: Any) -> bool:
        """Whether a (coerced) value is one of `choices`; always true without choices."""
        if not self.choices:
            return True
        for choice in self.choices:
            choice = str(choice)
            if "<" in choice:
                prefix = choice.split("<", 1)[0]
                if isinstance(value, str) and value.startswith(prefix) and len(value) > len(prefix):
                    return True
            elif value == choice or (not isinstance(value, str) and str(value) == choice):
                return True
        return False


@dataclass(frozen=True)
class Runner:
    kind: str
    run: Callable[[dict, Any], dict]
    params: tuple[Param, ...] = field(default_factory=tuple)
    help: str = ""
    # A check of the parameters together (after each alone): the problem in words, or None when fine.
    check: Callable[[dict], str | None] | None = None


def _coerce(param: Param, value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        if param.type is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"1", "true", "yes", "on"}:
                return True
            if str(value).lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if param.type is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
            raise ValueError(value)
        if param.type is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return param.type(value)
    except (TypeError, ValueError):
        raise RunnerError(f"{param.name}: expected {param.type.__name__}, got {value!r}") from None


def runner_validate(*, kind: str, params: dict) -> dict:
    """Check and normalise `params` (in place) for `kind`: unknown names, missing or mistyped values."""
    runner = runner_get(kind)
    known = {p.name: p for p in runner.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise RunnerError(f"unknown parameter(s) for {kind}: {', '.join(unknown)}; expected {', '.join(known)}")
    for p in runner.params:
        value = _coerce(p, params.get(p.name))
        if value is None and p.default is not None:
            value = p.default
        if value is None:
            if p.required:
                raise RunnerError(f"{p.name}: required for {kind}")
            params.pop(p.name, None)
            continue
        if not p.accepts(value):
            raise RunnerError(f"{p.name}: {value!r} is not one of {', '.join(map(str, p.choices))}")
        if p.check is not None and (problem := p.check(value)):
            raise RunnerError(f"{p.name}: {problem}")
        params[p.name] = value
    if runner.check is not None and (problem := runner.check(params)):
        raise RunnerError(problem)
    return params


def runner_confine_paths(*, kind: str, params: dict) -> dict:
    """Resolve (in place) every path parameter of `kind`; `RunnerError` for one outside the configured roots.

    Used for parameters that come from a web request (admin, API): a server path is never taken on trust.
    """
    from jobs.paths import PathOutsideRoots, path_confine

    for p in runner_get(kind).params:
        spec = p.path_spec
        if spec is None or params.get(p.name) in (None, ""):
            continue
        try:
            params[p.name] = str(path_confine(params[p.name], group=spec[0], must=spec[1], field=p.name))
        except PathOutsideRoots as exc:
            raise RunnerError(str(exc)) from None
    return params


def runner_get(kind: str) -> Runner:
    try:
        return RUNNERS[kind]
    except KeyError:
        raise RunnerError(f"no runner for job kind {kind!r}") from None


def runner_for(kind: str) -> Callable[[dict, Any], dict]:
    return runner_get(kind).run


def _missing(what: str, exc: Exception) -> RunnerError:
    return RunnerError(f"{what} is not available in this installation ({type(exc).__name__}: {exc})")


def call_with_supported(fn: Callable, kwargs: dict, reporter=None) -> Any:
    """Call `fn` with the keyword arguments it accepts; the reporter goes to its progress argument.

    A parameter the function does not take is an error naming it, never silently dropped.
    """
    sig = inspect.signature(fn)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unsupported = [k for k in kwargs if k not in sig.parameters and not accepts_any]
    if unsupported:
        raise RunnerError(f"{fn.__module__}.{fn.__name__} takes no parameter {', '.join(unsupported)}")
    if reporter is not None:
        for name in ("reporter", "progress", "on_progress", "callback"):
            if name in sig.parameters and name not in kwargs:
                kwargs[name] = reporter
                break
    return fn(**kwargs)


# --- the runners: each imports its owner's code lazily --------------------------------------------


def _stopped_on_request(reporter) -> None:
    """After a function stopped because its progress callback returned False: end the job as cancelled."""
    reporter.check_cancelled()


def run_train_diffusion(params: dict, reporter) -> dict:
    try:
        from generation.diffusion.config import preset_config
        from generation.diffusion.train import TrainOptions, train
    except ImportError as exc:
        raise _missing("diffusion training (generation.diffusion.train)", exc) from exc
    params = dict(params)
    overrides = {k: params.pop(k) for k in ("batch_size", "lr", "ema_decay") if k in params}
    config = preset_config(params.pop("preset", "tiny"), **overrides)
    steps = params.get("steps", TrainOptions.steps)
    options = TrainOptions(data=Path(params.pop("data")), out=Path(params.pop("out")), progress=False,
                           on_progress=reporter.on_progress("step"), **params)
    reporter.progress(0.0, f"training diffusion model ({config.preset}, {steps} steps)", force=True)
    checkpoint = train(config, options)
    _stopped_on_request(reporter)  # a cancel stops training at the next step, checkpoint written
    return {"checkpoint": str(checkpoint), "out": str(options.out), "steps": steps}


def run_train_progan(params: dict, reporter) -> dict:
    try:
        from generation.progan.train import train_progan
    except ImportError as exc:
        raise _missing("ProGAN training (generation.progan.train.train_progan)", exc) from exc
    reporter.progress(0.0, f"training ProGAN ({params.get('preset', 'default preset')})", force=True)
    result = call_with_supported(train_progan, {**params, "progress": False, "on_progress": reporter.on_progress("step")})
    _stopped_on_request(reporter)
    return _as_dict(result, out=params.get("out"))


def run_generate_images(params: dict, reporter) -> dict:
    try:
        from generation.sampling.generate import GenerateRequest, generate
        from generation.services.sampling import sampled_image_set_register
        from generation.training.progress import StopRequested
    except ImportError as exc:
        raise _missing("image generation (generation.sampling.generate)", exc) from exc
    params = dict(params)
    name = params.pop("name", None)
    request = GenerateRequest(checkpoint=Path(params.pop("checkpoint")), out=Path(params.pop("out")),
                              on_progress=reporter.on_progress("image", end=0.9), **params)
    reporter.progress(0.0, f"generating images from {request.checkpoint}", force=True)
    try:
        result = generate(request)
    except StopRequested:
        _stopped_on_request(reporter)
        raise
    reporter.progress(0.9, f"{result.count} images written to {result.out}", force=True)
    out = {"out": str(result.out), "count": result.count, "npz": str(result.npz)}
    if name:
        image_set = sampled_image_set_register(folder=result.out, name=name)
        out.update(image_set_id=image_set.pk, image_set=image_set.name)
    return out


def run_extract_patches(params: dict, reporter) -> dict:
    try:
        from generation.services.patches import patch_image_sets_register
        from generation.slides.extract import ExtractConfig, run_extraction
        from generation.slides.sampling import SamplingConfig
        from generation.slides.splits import parse_fractions
    except ImportError as exc:
        raise _missing("patch extraction (generation.slides.extract)", exc) from exc
    p = dict(params)
    sampling = SamplingConfig(**{k: p.pop(k) for k in ("patch_size", "patch_microns", "tumour_fraction", "per_slide",
                                                       "out_size", "seed") if k in p})
    config = ExtractConfig(
        slides_dir=Path(p["slides"]), labels_csv=Path(p["labels"]), out_dir=Path(p["out"]),
        annotations_dir=Path(p["annotations"]) if p.get("annotations") else None, sampling=sampling,
        stain=p.get("stain"), stain_reference=Path(p["stain_reference"]) if p.get("stain_reference") else None,
        split=parse_fractions(p.get("split", "0.8,0.1,0.1")), workers=p.get("workers", 1), progress=False,
        on_progress=reporter.on_progress("slide", end=0.95),
    )
    reporter.progress(0.0, f"extracting patches from {config.slides_dir}", force=True)
    result = run_extraction(config)
    if result.stopped:
        _stopped_on_request(reporter)  # the slides done are kept: launch again with the same out to go on
    for report in result.failed:
        reporter.log(f"FAILED {report['slide_id']}: {report['error']}")
    out = {"out": str(config.out_dir), "patches": result.n_patches, "failed_slides": [r["slide_id"] for r in result.failed],
           "report": str(result.report_path)}
    if not result.ok:
        raise RunnerError(f"{len(result.failed)} slide(s) failed (see the log); rerun to resume: "
                          + "; ".join(f"{r['slide_id']}: {r['error']}" for r in result.failed[:5]))
    if p.get("register_name"):
        sets = patch_image_sets_register(out_dir=config.out_dir, name_prefix=p["register_name"])
        out["image_sets"] = {split: image_set.name for split, image_set in sets.items()}
    return out


def run_evaluate_metrics(params: dict, reporter) -> dict:
    try:
        from evaluation.services import metric_evaluation_run, weights_file_in_root
    except ImportError as exc:
        raise _missing("metrics (evaluation.services.metric_evaluation_run)", exc) from exc
    reporter.progress(0.0, f"metrics of {params['fake']} against {params['real']}", force=True)
    if params.get("weights") and not Path(params["weights"]).is_absolute():  # a name inside HISTOSYNTH_WEIGHTS_ROOT
        params = {**params, "weights": str(weights_file_in_root(params["weights"]))}

    def on_progress(step: int, total: int, metrics: dict) -> None:
        # A cancel asked in the admin raises `Cancelled` from the reporter: the evaluation stops, nothing stored.
        what = "images and bootstrap resamples" if params.get("bootstrap") else "images"
        reporter.progress(0.95 * step / max(1, total), f"{what}: {step}/{total}")

    result = metric_evaluation_run(**params, on_progress=on_progress)
    evaluation = result.get("result", {})
    return {"metric_result_ids": result.get("metric_result_ids", []), "extractor": evaluation.get("extractor"),
            "weights_sha256": evaluation.get("weights_sha256"), "calibrated": evaluation.get("calibrated"),
            "overall": evaluation.get("overall", {}).get("metrics", {}),
            "interval": evaluation.get("overall", {}).get("interval"), "warnings": evaluation.get("warnings", [])}


def timm_features_problem(features: str) -> str | None:
    """Why a `timm:<model_name>` feature space cannot be used (timm has no such model), else None."""
    if not features.startswith("timm:"):
        return None
    try:
        from evaluation.timm_features import TimmWeightsError, known_model_spec
    except ImportError as exc:
        return str(_missing("timm feature spaces (evaluation.timm_features)", exc))
    try:
        known_model_spec(features)
    except TimmWeightsError as exc:
        return str(exc)
    return None


def _metrics_params_problem(params: dict) -> str | None:
    if str(params.get("features", "")).startswith("timm:") and not params.get("weights"):
        return (f"weights: features {params['features']} need the network's weights file "
                "(choose it in the weights folder)")
    return None


def run_compare_generators(params: dict, reporter) -> dict:
    try:
        from evaluation.services import generator_comparison_export
    except ImportError as exc:
        raise _missing("the generator comparison (evaluation.services.generator_comparison_export)", exc) from exc
    reporter.progress(0.0, f"comparing the generators of {params['study']}", force=True)
    return generator_comparison_export(study=params["study"])


def run_build_study(params: dict, reporter) -> dict:
    from jobs.studybuild import study_build_from_sets

    reporter.progress(0.0, f"building study {params['name']}")
    study = study_build_from_sets(**params, log=reporter.log)
    return {"study_id": study.pk, "study": study.name, "items": study.items.count(), "state": study.state}


def run_import_study(params: dict, reporter) -> dict:
    from readerstudy.services.imports import study_import_stored

    reporter.progress(0.0, f"importing {params.get('archive_name') or 'the archive'} as {params['name']}", force=True)

    def progress(stage: str, done: int, total: int) -> None:  # checking is the first half, writing the second
        reporter.progress((0.5 if stage == "written" else 0.0) + 0.5 * done / max(1, total), f"{stage}: {done}/{total}")

    study = study_import_stored(**params, progress=progress)
    return {"study_id": study.pk, "study": study.name, "items": study.items.count(),
            "confound_warnings": study.confound_audit.get("warnings", [])}


def _as_dict(result: Any, **extra) -> dict:
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if isinstance(result, dict):
        return {**{k: v for k, v in extra.items() if v is not None}, **result}
    out = {k: v for k, v in extra.items() if v is not None}
    if result is None:
        return out
    for attr in ("pk", "name", "path", "checkpoint"):
        if hasattr(result, attr):
            out[attr] = getattr(result, attr)
    out.setdefault("result", str(result))
    return out


_SEED = Param("seed", int, default=0, help="random seed: same parameters and seed give the same result")
# The study's harmonisation, with the choices of the model field (as the command, forms and API have them).
_HARMONISATION = Param("harmonisation", choices=tuple(Study.Harmonisation.values),
                       help="one low-level history for every image: "
                            + "; ".join(f"{value}: {label}" for value, label in Study.Harmonisation.choices))
# Shared by both trainers: where the data is and where the run goes; how often it logs and saves.
_TRAIN_DATA = (
    Param("data", required=True, kind="path:data:dir",
          help="patch folder (manifest.csv from extract_patches, or class sub-folders)"),
    Param("out", required=True, kind="path:data:new", help="run folder for checkpoints, logs and sample grids"),
)
_TRAIN_LOOP = (
    Param("log_every", int, help="steps between metrics rows (and progress updates)"),
    Param("sample_every", int, help="steps between sample grids (0: never)"),
    Param("save_every", int, help="steps between checkpoints"),
    Param("resume", bool, default=False, help="continue the run in the run folder"),
    _SEED,
)

RUNNERS: dict[str, Runner] = {
    Job.Kind.TRAIN_DIFFUSION: Runner(
        Job.Kind.TRAIN_DIFFUSION, run_train_diffusion, help="Train the class-conditional diffusion model.",
        params=(
            *_TRAIN_DATA,
            Param("preset", default="tiny", choices=("tiny", "small-128", "adm-128"), help="model preset"),
            Param("steps", int, help="training steps"),
            Param("batch_size", int, help="images per step (default: the preset's)"),
            Param("lr", float, label="Learning rate", help="learning rate (default: the preset's)"),
            Param("ema_decay", float, label="EMA decay", help="EMA decay (default: the preset's, 0.9999; lower it for short runs)"),
            *_TRAIN_LOOP,
        ),
    ),
    Job.Kind.TRAIN_PROGAN: Runner(
        Job.Kind.TRAIN_PROGAN, run_train_progan, help="Train the conditional ProGAN baseline.",
        params=(
            *_TRAIN_DATA,
            Param("preset", choices=("progan-128", "tiny"), help="network preset (default progan-128)"),
            Param("image_size", int, help="final resolution in pixels"),
            Param("images_per_phase", int, help="images shown per fade-in and per stable phase"),
            Param("batch_size", int, help="images per step at every resolution"),
            Param("max_steps", int, help="stop this run at that step (resume goes on)"),
            *_TRAIN_LOOP,
        ),
    ),
    Job.Kind.GENERATE_IMAGES: Runner(
        Job.Kind.GENERATE_IMAGES, run_generate_images,
        help="Sample images from a diffusion or ProGAN checkpoint and register them as a synthetic image set.",
        params=(
            Param("checkpoint", required=True, kind="path:data:file", help="checkpoint file"),
            Param("out", required=True, kind="path:data:new", help="output folder for PNGs, manifest and npz (new or empty)"),
            Param("name", help="name of the synthetic image set to register (none: files only)"),
            Param("per_label", int, help="images per class label"),
            Param("n", int, label="Number of images", help="number of images (when not per label)"),
            Param("label", help="only this class label (with n)"),
            Param("sampler", choices=("ddpm", "ddim", "dpmsolver++"), help="diffusion only (default: ddpm)"),
            Param("steps", int, help="diffusion only: sampling steps"),
            Param("guidance", float, help="diffusion only: classifier-free guidance scale"),
            Param("batch_size", int, help="images per batch"),
            Param("use_ema", bool, label="Use EMA weights", help="sample with the EMA weights (default yes)"),
            _SEED,
        ),
    ),
    Job.Kind.EXTRACT_PATCHES: Runner(
        Job.Kind.EXTRACT_PATCHES, run_extract_patches,
        help="Cut tumour patches from whole-slide images (resumable) and register a real image set per split.",
        params=(
            Param("slides", required=True, kind="path:data:dir", help="folder of whole-slide images (file stem = slide_id)"),
            Param("labels", required=True, kind="path:data:file", help="CSV with slide_id,label[,patient_id]"),
            Param("out", required=True, kind="path:data:new", help="output folder (launch again with it to resume)"),
            Param("annotations", kind="path:data:dir", help="folder of <slide_id>.geojson or <slide_id>[_mask].png (none: tissue detection)"),
            Param("patch_size", int, help="patch side in level-0 pixels (default 512)"),
            Param("patch_microns", float, help="patch side in microns instead (uses the slide's MPP)"),
            Param("tumour_fraction", float, help="least fraction of a patch in the tumour (default 0.9)"),
            Param("per_slide", int, help="patches per slide at most (default 100)"),
            Param("out_size", int, help="side of the written patches (default 128)"),
            Param("stain", choices=("macenko", "reinhard"), help="stain normalisation"),
            Param("stain_reference", kind="path:data:file", help="reference image for the stain normalisation"),
            Param("split", help="train,val,test fractions of patients (default 0.8,0.1,0.1)"),
            Param("workers", int, help="parallel processes over slides"),
            Param("register_name", help="register each split as the real image set <name>-<split>"),
            _SEED,
        ),
    ),
    Job.Kind.EVALUATE_METRICS: Runner(
        Job.Kind.EVALUATE_METRICS, run_evaluate_metrics,
        help="Compute FID, sFID, IS, precision/recall, KID, density/coverage and memorisation.",
        params=(
            Param("real", required=True, kind="image_set:real", label="Real image set", help="the reference images"),
            Param("fake", required=True, kind="image_set:synthetic", label="Synthetic image set",
                  help="the generated images"),
            Param("features", default="inception", choices=(
                "inception", "random-inception", "timm:vit_small_patch14_dinov2.lvd142m",
                "timm:vit_base_patch14_dinov2.lvd142m", "timm:vit_large_patch16_224?init_values=1e-5",
                "timm:<model_name>"), check=timm_features_problem,
                  help="random-inception is uncalibrated; timm:<model_name> is any timm network's embedding "
                       "(e.g. DINOv2 ViTs, or UNI's architecture) and needs its weights file"),
            Param("weights", kind="path:weights:file", label="Weights file",
                  help="timm weights in the weights folder, checked against FILE.sha256 beside it"),
            Param("bootstrap", int, help="bootstrap resamples for intervals and FID-infinity (default 0: none; 200 usual)"),
            Param("per_label", bool, default=False, help="also per class label"),
            Param("metrics", list, help="some of fid,sfid,is,pr,kid,dc,mem (default: all)"),
            Param("batch_size", int, help="images per batch of the feature extractor"),
            _SEED,
        ),
        check=_metrics_params_problem,
    ),
    Job.Kind.COMPARE_GENERATORS: Runner(
        Job.Kind.COMPARE_GENERATORS, run_compare_generators,
        help="One table of a study's generators: automatic metrics of every feature space beside the readers' "
             "AUC and fooled rate (CSV under media/evaluation/compare/).",
        params=(Param("study", required=True, help="study name (or id:<pk>)"),),
    ),
    Job.Kind.BUILD_STUDY: Runner(
        Job.Kind.BUILD_STUDY, run_build_study,
        help="Build a balanced, blinded study from a real image set and synthetic image sets.",
        params=(
            Param("name", required=True, help="study name"),
            Param("real_set", required=True, kind="image_set:real", label="Real image set"),
            Param("synthetic_sets", list, required=True, kind="image_sets:synthetic", label="Synthetic image sets",
                  help="one or more"),
            Param("n_real", int, label="Real images", help="real images (default: as many as all synthetic ones together)"),
            Param("n_per_synthetic", int, label="Images per synthetic set", help="images from each synthetic set"),
            Param("practice", int, help="practice items shown first with feedback, left out of the results"),
            Param("repeats", int, help="main items shown a second time to measure consistency"),
            Param("readers", list, kind="users", help="users to assign as readers"),
            _HARMONISATION,
            Param("open", bool, default=False, label="Open at once", help="open the study to its readers at once"),
            _SEED,
        ),
    ),
    Job.Kind.IMPORT_STUDY: Runner(
        Job.Kind.IMPORT_STUDY, run_import_study,
        help="Import a study from an uploaded zip archive stored on the server (large uploads run as this job).",
        params=(
            Param("name", required=True, help="study name"),
            Param("archive", required=True, help="path of the stored zip archive (removed when the job ends)"),
            Param("archive_name", help="the archive's uploaded file name"),
            Param("repeats", int, help="main items shown a second time to measure consistency"),
            Param("blinded_size", help="WIDTHxHEIGHT of the blinded images (default: the most common size)"),
            _HARMONISATION,
            Param("instructions", help="text shown before the first image"),
            Param("confidence_min", int), Param("confidence_max", int),
            Param("confidence_labels", list, help="labels of the confidence levels, lowest first"),
            Param("allow_revision", bool, help="readers may change an answer"),
            _SEED,
        ),
    ),
}
