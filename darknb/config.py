"""Run configuration: one flat dataclass, presets, and parameter validation for notebooks.

Notebooks hold flat, typed literals in a cell tagged ``parameters`` (papermill overrides them). The
next cell calls :func:`validate_notebook_params`, which rejects unknown or mistyped parameters —
papermill itself only logs unknown ones — and :meth:`RunConfig.from_params` builds the config.

Relative paths, one rule everywhere: a relative ``data_root``, ``train_list`` / ``test_list`` /
``val_list``, ``cache_dir``, ``output_dir``, ``enhancer_checkpoint`` or ``pretrained`` path is
relative to the project folder
(:func:`project_root`: the darknb checkout, the folder holding ``notebooks/``), whatever the
current folder: ``python -m darknb run``, ``train`` and ``prepare`` from anywhere, and a notebook
opened in JupyterLab from ``notebooks/``, all read ``<project>/data/...`` and write
``<project>/reports/...``. :class:`RunConfig` stores them resolved (absolute).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from darknb.errors import ConfigError
from darknb.files import RunDir

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

# RunConfig fields holding paths, with the values that are keywords, not paths ("" = none)
PATH_FIELDS = {"data_root": ("",), "train_list": ("",), "test_list": ("",), "val_list": ("",),
               "cache_dir": ("", "auto"), "output_dir": ("",),
               "enhancer_checkpoint": ("",), "pretrained": ("", "hub", "pretrain"),
               "enhanced_cache_dir": ("",), "baseline_pretrained": ("",)}


# Frame cache formats (darknb.data.framecache.FORMATS): npy raw, zstd / png lossless, jpeg lossy
CACHE_FORMATS = ("npy", "zstd", "png", "jpeg")


# The lowest distillation temperature accepted. KD's term is beta * T^2 * KL(softmax(t/T) ||
# softmax(s/T)); its gradient on the student's logits is T * (softmax(s/T) - softmax(t/T)), which
# fades linearly as T -> 0: measured on random 9-class logits (std 2), its norm relative to T = 1
# is 0.67 at T = 0.5, 0.38 at 0.25, 0.16 at 0.1 and 1.7e-9 at 1e-9 (the student then trains on CE
# alone while its report says "distilled"). 0.5 keeps two thirds of T = 1's signal; the usual
# values are 1-20 (Hinton et al. 2015), the paper names none and darknb uses 4.
MIN_TEMPERATURE = 0.5


def default_cache_dir(data_root: str | Path, cache_format: str = "npy") -> Path:
    """``cache_dir="auto"``: beside the dataset, ``<parent>/cache/<name>`` (``data/ARID`` ->
    ``data/cache/ARID``), so every dataset root gets its own cache; a format other than ``npy``
    gets its own too (``data/cache/ARID.zstd``)."""
    root = Path(data_root)
    return root.parent / "cache" / (root.name if cache_format == "npy" else f"{root.name}.{cache_format}")


def project_root() -> Path:
    """The folder relative paths resolve against: the darknb checkout (where ``notebooks/`` is);
    for an installed copy without one, the current folder."""
    return REPO_ROOT if NOTEBOOK_DIR.is_dir() else Path.cwd()


def resolve_path(path: str | os.PathLike, keywords=("",)) -> str:
    """``path`` made absolute by the project rule (see the module doc); ``keywords`` (values
    that name no file, e.g. ``cache_dir="auto"``) are returned unchanged."""
    text = os.fspath(path)
    if text in keywords:
        return text
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else project_root() / p)


@dataclass
class RunConfig:
    """Everything one training stage needs. The defaults ARE the demo (``make demo``): a tiny model
    on the synthetic set, sized for 2 CPU cores; ``PRESETS["paper"]`` is the paper's setting.

    Every default is written here once: the notebooks' ``parameters`` cells repeat these values
    (tests/test_config.py fails when one disagrees) and ``PRESETS["demo"]`` is empty.
    """

    # data
    dataset: str = "synthetic"          # synthetic | arid | arid1.5 | arid1.1 | dark48 | folder
    data_root: str = "data/synthetic"
    split: int = 1
    # list files replacing the dataset's own (ARID's TAB lines or `path label` lines, paths
    # relative to data_root); "" = the dataset's own (a folder without lists: a split of its own)
    train_list: str = ""
    test_list: str = ""
    val_list: str = ""                  # "" = the dataset's own, else val_fraction of train's groups
    num_frames: int = 8                 # T: frames per clip
    size: int = 32                      # H = W of the network input
    # uniform: a synthetic motion spans the whole 40-frame video; consecutive is DarkLight's
    # protocol for real datasets
    sampling: str = "uniform"           # consecutive (DarkLight) | uniform
    # training crop: auto = multiscale for the R(2+1)D / DarkLight models (DarkLight's and
    # LateTemporalModeling's MultiScaleCrop: 13 fixed positions), scale_jitter for the ViT models
    # (the same scales at any position: the demo's) | multiscale | scale_jitter | random (no scale)
    crop: str = "auto"
    num_workers: int = 0
    cache_dir: str = "auto"             # frame cache, made when missing: auto = <data_root's parent>/cache/<name>; "" = decode videos
    # the frame cache's format (README, "Cache"): npy = raw uint8, the fastest on small clips (the
    # demo); zstd = lossless, 2.5x smaller, the choice for ARID-size data; png = lossless, smaller,
    # slower; jpeg = LOSSY quality 95 (DarkLight's frames), 16x smaller, said in the provenance
    cache_format: str = "npy"           # npy | zstd | png | jpeg
    on_error: str = "raise"             # raise | skip (skipped videos are counted in the report)
    # validation (epoch / checkpoint selection): the dataset's own val list where it has one, else
    # this fraction of the training list's groups held out (never the test list)
    val_fraction: float = 0.15
    # model
    model: str = "vit_bert_tiny"        # vit_bert is the paper preset (ViT-B/16, 112 px, 64 frames)
    # pretrain: this run's own backbone, pre-trained on the well-lit synthetic set (01_pretrain);
    # "" (scratch) | "hub" (timm's weights, downloaded) | the path of a backbone file
    pretrained: str = "pretrain"
    # backbone: the pre-training statistics | dataset: the arm's own training inputs' statistics (the
    # normalisation control of the study) | clip: per-clip standardisation (an older control)
    input_norm: str = "backbone"
    # lp-ft: a linear probe on the frozen pre-trained features initialises the classifier, then the
    # model is fine-tuned (Kumar et al. 2022; chosen on the validation split, see README "The demo")
    # | ft: fine-tune from a randomly initialised classifier
    recipe: str = "lp-ft"
    # the R(2+1)D-34 baselines' weights: "" (scratch) or the path of an ig65m-pytorch checkpoint,
    # e.g. r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth (the paper's IG65M row)
    baseline_pretrained: str = ""
    enhancer: str = "zerodce"           # teacher's enhancer: zerodce | zerodce++ | gamma | none
    enhancer_checkpoint: str = ""       # "" = fit Zero-DCE zero-reference on training frames
    enhancer_fit_steps: int = 150
    # zero-reference fit: "short" (darknb's CPU fit: lr 1e-3, 32-px crops; 128 px for Zero-DCE++) or
    # "original" (the authors': lr 1e-4, frames resized to 256 / 512 px); see enhance.FIT_PROTOCOLS
    enhancer_fit: str = "short"
    enhancer_scale_factor: int = 12     # Zero-DCE++ estimates its curve at 1/12 resolution (fitted at 1)
    # the teacher's input. "online": T_e enhances each resized training crop (needed to train the
    # enhancer). "enhanced_cache": T_e enhanced the native-resolution frames once, before the resize
    # (the paper's order); teacher and student then see the same crops of the same frames
    teacher_input: str = "enhanced_cache"  # enhanced_cache | online
    enhanced_cache_dir: str = ""        # "" = <output_dir>/enhanced_cache (the enhancer may be fitted per run)
    # optimisation (paper: AdamW, lr 1e-4, batch 2). The demo fine-tunes the tiny pre-trained
    # model at lr 1e-3, batch 16, 1 warm-up epoch then cosine: chosen on the validation split of a
    # prototype of the synthetic miniature (darknb's README, "The demo"); 6 epochs instead of the
    # prototype's 10 to fit the demo's 15 minutes on 2 cores (a budget choice).
    epochs: int = 6
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    grad_accum: int = 1
    grad_clip: float = 1.0
    mixed_precision: str = "auto"       # auto (bf16/fp16 on GPU, none on CPU) | no | fp16 | bf16
    # learning rate: linear warm-up over warmup_epochs, then constant (the paper) or cosine to 0
    lr_schedule: str = "cosine"         # constant | cosine
    warmup_epochs: int = 1
    compile: bool = False               # torch.compile the model (GPU; the first steps compile)
    # distillation: L = alpha * CE + beta * T^2 * KL (the paper: alpha = beta = 1, no T named;
    # T = 4 is Hinton's usual, and beat T = 1 on the prototype's validation split)
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 4.0
    # evaluation: views per test video, clips x crops (softmax averaged). 1x1 = DarkLight's centre
    # clip + centre crop; 10x3 = the multi-view protocol of video recognition. Validation (epoch
    # selection) always uses 1x1.
    eval_views: str = "1x1"
    # bookkeeping
    seed: int = 0
    output_dir: str = "reports/demo"
    resume: bool = True
    save_every: int = 10                # checkpoint every N epochs (and always after the last)
    tracker: str = ""                   # "" (none) | tensorboard: <output_dir>/tensorboard/<stage>

    def __post_init__(self):
        for name, keywords in PATH_FIELDS.items():  # one rule for relative paths (module doc)
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                setattr(self, name, resolve_path(value, keywords))
        checks = {
            "num_frames": self.num_frames >= 1, "size": self.size >= 8, "split": self.split >= 1,
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0, "grad_accum": self.grad_accum >= 1,
            "alpha": self.alpha >= 0, "beta": self.beta >= 0,
            "temperature": self.temperature >= MIN_TEMPERATURE,
            "num_workers": self.num_workers >= 0, "enhancer_fit_steps": self.enhancer_fit_steps >= 0,
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "save_every": self.save_every >= 1,
            "enhancer_fit": self.enhancer_fit in ("short", "original"),
            "enhancer_scale_factor": self.enhancer_scale_factor >= 1,
            "teacher_input": self.teacher_input in ("online", "enhanced_cache"),
            "sampling": self.sampling in ("consecutive", "uniform"),
            "crop": self.crop in ("auto", "multiscale", "scale_jitter", "random"),
            "on_error": self.on_error in ("raise", "skip"),
            "cache_format": self.cache_format in CACHE_FORMATS,
            "input_norm": self.input_norm in ("backbone", "dataset", "clip"),
            "recipe": self.recipe in ("ft", "lp-ft"),
            "mixed_precision": self.mixed_precision in ("auto", "no", "fp16", "bf16"),
            "lr_schedule": self.lr_schedule in ("constant", "cosine"),
            "warmup_epochs": 0 <= self.warmup_epochs <= max(self.epochs, 0),
            "eval_views": _views_ok(self.eval_views),
            "tracker": self.tracker in ("", "tensorboard"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise ConfigError(f"RunConfig: invalid value {getattr(self, name)!r} for parameter "
                              f"{name!r}{_WHY.get(name, '')}")
        if self.alpha + self.beta <= 0:
            raise ConfigError("RunConfig: parameters 'alpha' and 'beta' are both 0: the loss "
                              "alpha * CE + beta * T^2 * KL is 0 and nothing would be trained; "
                              "set alpha > 0 (cross-entropy) or beta > 0 (distillation)")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides) -> "RunConfig":
        """Build from a flat dict, ignoring keys that are not config fields (notebook-only ones)."""
        known = {f.name for f in fields(cls)}
        merged = {k: v for k, v in {**params, **overrides}.items() if k in known}
        defaults = cls()
        validate_params(merged, {k: getattr(defaults, k) for k in merged})
        return cls(**merged)

    @property
    def frame_cache(self) -> Path | None:
        """The frame cache folder (``cache_dir``, with "auto" resolved), None for no cache."""
        if not self.cache_dir:
            return None
        if self.cache_dir == "auto":
            return default_cache_dir(self.data_root, self.cache_format)
        return Path(self.cache_dir)

    @property
    def enhanced_frame_cache(self) -> Path:
        """Where the teacher's enhanced frames live (``teacher_input="enhanced_cache"``):
        ``enhanced_cache_dir`` or the run's own folder (``<output_dir>/enhanced_cache``: a
        zero-reference-fitted enhancer belongs to its run; a format other than npy adds its name:
        ``enhanced_cache.zstd``)."""
        if self.enhanced_cache_dir:
            return Path(self.enhanced_cache_dir)
        path = RunDir(self.output_dir).enhanced_cache
        return path if self.cache_format == "npy" else path.with_name(f"{path.name}.{self.cache_format}")

    @property
    def train_crop(self) -> str:
        """The training crop ``crop`` names, "auto" resolved for ``model``
        (:data:`MULTISCALE_CROP_MODELS`)."""
        if self.crop != "auto":
            return self.crop
        return "multiscale" if self.model in MULTISCALE_CROP_MODELS else "scale_jitter"

    @property
    def light_gamma(self) -> float | None:
        """The gamma of ``model``'s second, gamma-corrected input view, which the loader makes
        (:data:`LIGHT_VIEW_MODELS`); None for a model of one view."""
        return LIGHT_VIEW_MODELS.get(self.model)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def without_kd(self) -> "RunConfig":
        """This config for a model trained on labels alone (the teacher, the no-KD control, the
        baselines): beta = 0, and alpha = 1 where it was 0 (a pure-distillation student's
        alpha = 0 would leave them no loss at all)."""
        return self.replace(beta=0.0, alpha=self.alpha if self.alpha > 0 else 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


_KD_FADES = ("the KD term's gradient fades linearly with T: at 0.1 it is 16 % of T = 1's, at 1e-9 "
             "zero; see MIN_TEMPERATURE in darknb/config.py")
# Why a value is refused, where the range alone does not say it
_WHY = {
    "epochs": ": at least 1 (0 epochs would report an untrained model as trained)",
    "temperature": f": the distillation temperature must be >= {MIN_TEMPERATURE} ({_KD_FADES})",
    "warmup_epochs": ": at most epochs (and >= 0)",
    "size": ": at least 8 pixels",
}
# What a model's clips need from the loader, by model name (darknb.data cannot see darknb.models).
# crop="auto": the R(2+1)D models at the paper's size train with MultiScaleCrop as DarkLight and
# LateTemporalModeling3DCNN did; every other model (the ViTs, the CPU demo's) with scale jitter.
MULTISCALE_CROP_MODELS = ("r2plus1d_bert", "r2plus1d_34_bert", "two_stream_r2plus1d_34_bert")
# DarkLight's two-stream models at the paper's size get their gamma view (gamma 1.8, its README)
# from the loader: the uint8 lookup table on native frames before the resize, as DarkLight's
# loader makes it. The CPU demo's two_stream_bert_tiny makes it in the model, from the resized clip.
LIGHT_VIEW_MODELS = {"two_stream_r2plus1d_34_bert": 1.8, "two_stream_bert": 1.8}


def parse_views(views: str) -> tuple[int, int]:
    """``"10x3"`` -> (10 temporal clips, 3 spatial crops). ``"1x1"`` is the single centre clip +
    centre crop (DarkLight's test protocol); crops are 1 (centre) or 3 (both ends and the centre
    of the frame's long side)."""
    try:
        clips, crops = (int(v) for v in str(views).lower().split("x"))
    except ValueError:
        raise ConfigError(f"eval views must look like '1x1' or '10x3' (clips x crops), got {views!r}") from None
    if clips < 1 or crops not in (1, 3):
        raise ConfigError(f"eval views {views!r}: need clips >= 1 and crops 1 or 3")
    return clips, crops


def _views_ok(views) -> bool:
    try:
        parse_views(views)
    except ConfigError:
        return False
    return True


# Knobs only the report notebooks read (not training): written once here, like RunConfig's.
NOTEBOOK_ONLY: dict[str, Any] = dict(
    # every training notebook: each arm is trained once per seed (a paired design)
    seeds=[0, 1, 2, 3, 4],
    jobs=0,                             # runs side by side, one process each; 0: a core each (CPU), 1 (GPU)
    # 00_explore
    video_index=0,                      # which clip to look at
    max_frames=32,                      # frames decoded for the player and the figures
    gamma=1.8,                          # DarkLight's gamma correction
    # 01_pretrain (the well-lit set; `pretrained="pretrain"` fine-tunes from its backbone)
    pretrain_epochs=12,                 # the prototype's 16, shortened for the demo's budget
    pretrain_seed=0,                    # the pre-trained backbone's seed (the study's seeds vary fine-tuning)
    pretrain_lr=1e-3,
    # 02-05: the designs run: "backbone" (every arm normalised with the pre-training statistics:
    # teacher, no-KD, KD and self-KD students) and "dataset" (teacher, no-KD and KD students each
    # normalised with its own training inputs' statistics: the normalisation control)
    input_norms=["backbone", "dataset"],
    # 04_ablation: beta swept at alpha = 1 and the run's T, T swept at beta = 1 (issue 19), for the
    # first `ablation_seeds` seeds; points that are study arms (beta = 0: the no-KD student; the
    # run's beta and T: the KD student) reuse their runs. The per-clip standardisation control
    # (superseded by the "dataset" design) is opt-in.
    betas=[0.0, 0.5, 1.0, 2.0], temperatures=[1.0, 4.0], ablation_seeds=3,
    run_clip_norm_control=False,
    # 05_comparison (baselines are opt-in: they do not fit the demo's 15 minutes on 2 cores)
    train_baseline_models=False,
    r2plus1d_epochs=0,                  # 0: the same epochs as the teacher and student
    n_boot=2000,
    run_latency_repeats=3,
    paper_latency_repeats=0,            # 0 skips the paper-size CPU latency (FLOPs are still counted)
)


def check_notebook_knobs(values: Mapping[str, Any]) -> None:
    """Ranges of the notebook-only knobs in ``values`` (those present): ``seeds`` non-empty,
    without duplicates, each >= 0; every ``temperatures`` entry >= :data:`MIN_TEMPERATURE`;
    ``alphas`` and ``betas`` >= 0; ``jobs`` >= 0; ``pretrain_epochs`` >= 1. Raises
    :class:`ConfigError` naming the parameter."""
    seeds = values.get("seeds")
    if seeds is not None:
        if not seeds:
            raise ConfigError("parameter 'seeds' is empty: every arm is trained once per seed; give "
                              "at least one (e.g. seeds=[0, 1, 2])")
        repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
        if repeated:
            raise ConfigError(f"parameter 'seeds' repeats {repeated}: {list(seeds)}; a seed trains "
                              "the same run twice and would count twice in the statistics")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
            raise ConfigError(f"parameter 'seeds' must hold integers >= 0, got {list(seeds)}")
    low = [t for t in values.get("temperatures") or [] if t < MIN_TEMPERATURE]
    if low:
        raise ConfigError(f"parameter 'temperatures' holds {low}: each must be >= {MIN_TEMPERATURE} "
                          f"({_KD_FADES})")
    for key in ("alphas", "betas"):
        negative = [v for v in values.get(key) or [] if v < 0]
        if negative:
            raise ConfigError(f"parameter {key!r} holds {negative}: each must be >= 0")
    if values.get("jobs", 0) < 0:
        raise ConfigError(f"parameter 'jobs' must be >= 0 (0: automatic), got {values['jobs']}")
    if values.get("pretrain_epochs", 1) < 1:
        raise ConfigError(f"parameter 'pretrain_epochs' must be >= 1, got {values['pretrain_epochs']}")
    if values.get("ablation_seeds", 1) < 1:
        raise ConfigError(f"parameter 'ablation_seeds' must be >= 1 (the first N seeds), got "
                          f"{values['ablation_seeds']}")
    norms = values.get("input_norms")
    if norms is not None and (not norms or set(norms) - {"backbone", "dataset"} or len(set(norms)) < len(norms)):
        raise ConfigError(f"parameter 'input_norms': {list(norms)!r}; give one or both of "
                          "'backbone' (the pre-training statistics) and 'dataset' (each arm's own "
                          "training inputs), once each")


def defaults() -> dict[str, Any]:
    """Every parameter's default as written (paths relative): RunConfig's fields and the
    notebook-only knobs."""
    return {**{f.name: f.default for f in fields(RunConfig)}, **NOTEBOOK_ONLY}


PRESETS: dict[str, dict[str, Any]] = {
    # What `make demo` runs: the defaults themselves (kept as a name for `--preset demo`).
    "demo": {},
    # The paper's setting (Section "Settings reported" of PAPER.md): ViT-B + BERT, 64 x 112 x 112
    # consecutive frames, batch 2, AdamW 1e-4, alpha = beta = 1. Needs a GPU. A 1.1 GB checkpoint
    # every 5 epochs (written in the background), TensorBoard logs.
    "paper": dict(model="vit_bert", num_frames=64, size=112, sampling="consecutive", batch_size=2,
                  lr=1e-4, epochs=30, num_workers=8, save_every=5, alpha=1.0, beta=1.0,
                  temperature=1.0, pretrained="hub", seeds=[0, 1, 2], train_baseline_models=True,
                  betas=[0.0, 0.5, 1.0], temperatures=[1.0, 4.0], paper_latency_repeats=1,
                  recipe="ft",
                  tracker="tensorboard", teacher_input="enhanced_cache"),
}


def preset_params(name: str | None) -> dict[str, Any]:
    """The parameters of preset ``name`` (None or "none": no preset); an unknown name is a
    :class:`ConfigError` listing the presets."""
    if name is None or name == "none":
        return {}
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {sorted(PRESETS)} (or 'none')")
    return dict(PRESETS[name])


def _type_name(value) -> str:
    return type(value).__name__


def validate_params(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """Reject unknown keys and values whose type differs from the default's type.

    An int is accepted where a float is expected (``lr = 1`` is fine); a bool is never an int.
    Returns a new dict: the defaults updated with ``params``.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown}; valid parameters are {sorted(defaults)}")
    out = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        ok = type(value) is type(default) or (
            isinstance(default, float) and type(value) is int) or default is None
        if not ok:
            raise ConfigError(
                f"parameter {key!r} must be {_type_name(default)} (like its default {default!r}), "
                f"got {_type_name(value)} {value!r}")
        out[key] = float(value) if isinstance(default, float) else value
    return out


def notebook_defaults(notebook: str | Path) -> dict:
    """The literals assigned in a notebook's cell tagged ``parameters``."""
    path = _notebook_path(notebook)
    if not path.is_file():
        raise ConfigError(f"notebook {str(path)!r} not found")
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = "".join(cells[0]["source"])
    defaults = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            try:
                defaults[target.id] = ast.literal_eval(node.value)
            except ValueError as err:
                raise ConfigError(f"{path}: parameter {target.id!r} is not a literal") from err
    return defaults


# Names IPython itself puts in a kernel's globals; everything else that is a plain literal in the
# namespace right after the parameters cell was put there by the parameters or injected cell.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_LITERAL_TYPES = (str, int, float, bool, list, tuple, dict, type(None))


def _names_assigned_by_notebook(path: Path) -> set[str]:
    """Names the notebook's own (non-parameter) code cells assign, so that re-running the
    validation cell by hand after later cells ran does not mistake them for parameters."""
    nb = json.loads(path.read_text())
    names: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _notebook_path(notebook: str | Path) -> Path:
    path = Path(notebook)
    return NOTEBOOK_DIR / f"{notebook}.ipynb" if not path.suffix else path


def validate_notebook_params(namespace: Mapping[str, Any], notebook: str | Path) -> dict:
    """Validate a running notebook's parameters against its own ``parameters`` cell.

    Call it in the cell right after the parameters cell with ``globals()``: any other literal global
    (e.g. an unknown name papermill injected) is rejected, and so is a mistyped value.
    """
    defaults = notebook_defaults(notebook)
    own = _names_assigned_by_notebook(_notebook_path(notebook)) - set(defaults)
    given = {k: v for k, v in namespace.items()
             if not k.startswith("_") and k not in _IPYTHON_NAMES and k not in own
             and isinstance(v, _LITERAL_TYPES)}
    values = validate_params(given, defaults)
    check_notebook_knobs(values)
    return values
