"""The one sampler table: every sampler Handoff can run, under the names each tool writes
(A1111's label and its k_* aliases, ComfyUI's sampler_name, InvokeAI's and NovelAI's
names), the diffusers class that runs it on noise-prediction models (SD, SDXL) and on
flow-matching ones (Flux, Z-Image, SD3…), and the schedules (A1111's "Schedule type",
ComfyUI's `scheduler`) as diffusers options.

Handoff names a stage's scheduler the way A1111 did before it split the two fields: the
sampler's label, then the schedule when it is not the plain one ("DPM++ 2M Karras",
"Euler a", "DPM++ 2M SDE Exponential"). core.schedulers runs these names; the readers
and writers in core.interop translate them both ways. A name no row knows is never
replaced by a guess: the translators return None and a notice saying so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The diffusers classes that take sigma-spacing options (use_karras_sigmas and its kin)
# and timestep_spacing, in diffusers 0.42.1 (tests/test_interop_samplers.py checks them).
_SIGMA_OPTIONS = {
    "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "LMSDiscreteScheduler", "DPMSolverSDEScheduler", "FlowMatchEulerDiscreteScheduler",
}
_SPACING_OPTION = {
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "DDIMScheduler", "PNDMScheduler", "LCMScheduler", "DDPMScheduler", "TCDScheduler", "LMSDiscreteScheduler",
}


@dataclass
class Sampler:
    name: str  # A1111's label, and the first word(s) of Handoff's name
    noise: str | None  # diffusers class on noise-prediction models; None: cannot drive them
    flow: str | None = None  # diffusers class on flow-matching models; None: cannot drive them
    comfy: tuple[str, ...] = ()  # ComfyUI sampler_name(s); the first is the one written
    aliases: tuple[str, ...] = ()  # other tools' names (A1111 k_*, InvokeAI, NovelAI, Dream)
    options: dict = field(default_factory=dict)
    default_schedule: str = "Normal"  # what A1111 1.9+ means by "Schedule type: Automatic"
    needs: str | None = None  # a package diffusers needs to build this class
    approximate: str = ""  # why diffusers' class is close to the tool's sampler, not the same
    a1111: str | None = None  # the A1111 label written, when it differs from `name`

    def cls(self, flow: bool) -> str | None:
        return self.flow if flow else self.noise

    def written(self) -> str:
        return self.a1111 or self.name


@dataclass
class Schedule:
    name: str  # A1111's "Schedule type" label
    comfy: str | None  # ComfyUI's scheduler name
    options: dict = field(default_factory=dict)
    plain: bool = False  # the schedule a bare sampler name means (no suffix in Handoff's name)
    needs: str | None = None
    invoke_suffix: str = ""  # InvokeAI's name suffix ("_k": Karras)

    def fits(self, cls: str) -> bool:
        keys = set(self.options)
        if keys & {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"}:
            return cls in _SIGMA_OPTIONS
        if "timestep_spacing" in keys:
            return cls in _SPACING_OPTION
        return True


SAMPLERS: list[Sampler] = [
    Sampler("Euler", "EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", ("euler",), ("k_euler",)),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", None, ("euler_ancestral",),
            ("k_euler_a", "k_euler_ancestral", "euler_a")),
    Sampler("Heun", "HeunDiscreteScheduler", None, ("heun",), ("k_heun",)),
    Sampler("LMS", "LMSDiscreteScheduler", None, ("lms",), ("k_lms",), needs="scipy"),
    Sampler("DPM2", "KDPM2DiscreteScheduler", None, ("dpm_2",), ("k_dpm_2", "kdpm_2"), default_schedule="Karras"),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", None, ("dpm_2_ancestral",), ("k_dpm_2_a", "kdpm_2_a"),
            default_schedule="Karras"),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", None, ("dpmpp_2m",), ("k_dpmpp_2m", "k_dpmpp_2"),
            default_schedule="Karras"),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", None, ("dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
            ("k_dpmpp_2m_sde",), {"algorithm_type": "sde-dpmsolver++"}, default_schedule="Exponential"),
    Sampler("DPM++ SDE", "DPMSolverSDEScheduler", None, ("dpmpp_sde", "dpmpp_sde_gpu"), ("k_dpmpp_sde",),
            default_schedule="Karras", needs="torchsde"),
    Sampler("DPM++ 2S a", "DPMSolverSinglestepScheduler", None, ("dpmpp_2s_ancestral",),
            ("k_dpmpp_2s_a", "k_dpmpp_2s_ancestral", "dpmpp_2s"), default_schedule="Karras",
            approximate="diffusers has no ancestral DPM++ 2S: its singlestep DPM-Solver++ (order 2) runs instead"),
    Sampler("DDIM", "DDIMScheduler", None, ("ddim",), ("ddim_v3",)),
    Sampler("PLMS", "PNDMScheduler", None, (), ("pndm",)),
    Sampler("UniPC", "UniPCMultistepScheduler", None, ("uni_pc", "uni_pc_bh2"), ("unipc",)),
    Sampler("LCM", "LCMScheduler", None, ("lcm",)),
    Sampler("DEIS", "DEISMultistepScheduler", None, ("deis",)),
    Sampler("DDPM", "DDPMScheduler", None, ("ddpm",)),
    Sampler("TCD", "TCDScheduler", None, (), ("tcd",)),
    # Handoff's first name for Euler on flow-matching models, kept so saved projects load;
    # it drives flow-matching models only, and other tools read it as Euler.
    Sampler("Flow Euler", None, "FlowMatchEulerDiscreteScheduler", a1111="Euler"),
]

SCHEDULES: list[Schedule] = [
    Schedule("Normal", "normal", plain=True),
    Schedule("Simple", "simple", plain=True),
    Schedule("Uniform", None, plain=True),
    Schedule("Karras", "karras", {"use_karras_sigmas": True}, invoke_suffix="_k"),
    Schedule("Exponential", "exponential", {"use_exponential_sigmas": True}),
    Schedule("Beta", "beta", {"use_beta_sigmas": True}, needs="scipy"),
    Schedule("SGM Uniform", "sgm_uniform", {"timestep_spacing": "trailing"}),
]
_BY_SCHEDULE = {s.name.lower(): s for s in SCHEDULES}
_PLAIN = SCHEDULES[0]


@dataclass(frozen=True)
class Choice:
    """One name Handoff runs: a sampler with a schedule."""

    sampler: Sampler
    schedule: Schedule

    @property
    def name(self) -> str:
        return self.sampler.name if self.schedule.plain else f"{self.sampler.name} {self.schedule.name}"

    def cls(self, flow: bool) -> str | None:
        """The diffusers class for this kind of model; None when the sampler, or this
        schedule with it, cannot drive such a model."""
        cls = self.sampler.cls(flow)
        return cls if cls is not None and self.schedule.fits(cls) else None

    def options(self) -> dict:
        return {**self.sampler.options, **self.schedule.options}

    def needs(self) -> str | None:
        return self.sampler.needs or self.schedule.needs


def _choices() -> dict[str, Choice]:
    out: dict[str, Choice] = {}
    for sampler in SAMPLERS:
        out[sampler.name] = Choice(sampler, _PLAIN)
        for schedule in SCHEDULES:
            if schedule.plain or sampler.a1111:  # a legacy alias (Flow Euler) keeps its one name
                continue
            classes = [c for c in (sampler.noise, sampler.flow) if c]
            if any(schedule.fits(c) for c in classes):
                out[f"{sampler.name} {schedule.name}"] = Choice(sampler, schedule)
    return out


CHOICES: dict[str, Choice] = _choices()  # every name Handoff runs, in the table's order
_BY_LOWER = {name.lower(): c for name, c in CHOICES.items()}


def choice(name: str | None) -> Choice | None:
    """The sampler and schedule of a Handoff scheduler name (case does not matter)."""
    return _BY_LOWER.get(name.strip().lower()) if isinstance(name, str) else None


def fits(name: str, flow: bool) -> bool:
    """Whether the named scheduler can drive a flow-matching (or a noise-prediction) model."""
    c = choice(name)
    return c is not None and c.cls(flow) is not None


def _with(sampler: Sampler, schedule: Schedule | None) -> Choice | None:
    schedule = schedule or _PLAIN
    if schedule.plain:
        return CHOICES.get(sampler.name)
    return CHOICES.get(f"{sampler.name} {schedule.name}")


def _unknown(tool: str, what: str) -> str:
    return (f"{tool} sampler {what} has no diffusers equivalent Handoff knows: the stage keeps its model's "
            f"own scheduler (choose one in the stage's Scheduler list)")


def from_a1111(sampler: str | None, schedule: str | None = None, tool: str = "A1111") -> tuple[str | None, str]:
    """(Handoff name, notice) for A1111's `Sampler` and `Schedule type` fields. The old
    combined labels ("DPM++ 2M Karras") read too; "Automatic" is the sampler's own default
    schedule, as A1111 1.9+ means it. (None, notice) when no row knows the pair."""
    if not sampler or not sampler.strip():
        return None, ""
    label = sampler.strip()
    sched = _BY_SCHEDULE.get((schedule or "").strip().lower())
    automatic = (schedule or "").strip().lower() == "automatic"
    found = _sampler_by_label(label)
    if found is None:
        # An old combined label: a sampler, then a schedule suffix.
        for s in SCHEDULES:
            if label.lower().endswith(" " + s.name.lower()):
                found = _sampler_by_label(label[: -len(s.name) - 1])
                if found is not None:
                    sched = s
                    break
    if found is None:
        return None, _unknown(tool, f"'{label}'" + (f" (schedule type '{schedule}')" if schedule else ""))
    if automatic:
        sched = _BY_SCHEDULE[found.default_schedule.lower()]
    elif schedule and sched is None:
        return None, _unknown(tool, f"'{label}' with schedule type '{schedule}'")
    c = _with(found, sched)
    if c is None:
        return None, (f"{tool} sampler '{label}'" + (f" with schedule type '{schedule}'" if schedule else "")
                      + " cannot be built in diffusers: the stage keeps its model's own scheduler")
    return c.name, found.approximate


def _sampler_by_label(label: str) -> Sampler | None:
    low = label.lower()
    return next((s for s in SAMPLERS if s.name.lower() == low or low in s.aliases), None)


def from_comfy(sampler_name: str | None, scheduler: str | None, tool: str = "ComfyUI") -> tuple[str | None, str]:
    """(Handoff name, notice) for ComfyUI's `sampler_name` and `scheduler` inputs."""
    if not isinstance(sampler_name, str) or not sampler_name:
        return None, ""
    low = sampler_name.lower()
    found = next((s for s in SAMPLERS if low in s.comfy), None)
    sched = next((s for s in SCHEDULES if s.comfy and s.comfy == (scheduler or "normal").lower()), None)
    if found is None or sched is None:
        return None, _unknown(tool, f"'{sampler_name}' with scheduler '{scheduler}'")
    c = _with(found, sched)
    if c is None:
        return None, f"{tool} sampler '{sampler_name}' with scheduler '{scheduler}' cannot be built in diffusers: " \
                     "the stage keeps its model's own scheduler"
    return c.name, found.approximate


def from_alias(name: str | None, tool: str) -> tuple[str | None, str]:
    """(Handoff name, notice) for the single sampler names InvokeAI, NovelAI and the old
    Dream/sd-metadata formats write (k_lms, dpmpp_2m_k, k_euler_ancestral…), where a
    `_k` or `_karras` suffix means the Karras schedule."""
    if not isinstance(name, str) or not name.strip():
        return None, ""
    low = name.strip().lower()
    schedule = None
    for suffix in ("_karras", "_k"):
        if low.endswith(suffix) and _alias(low[: -len(suffix)]):
            low, schedule = low[: -len(suffix)], _BY_SCHEDULE["karras"]
            break
    found = _alias(low)
    if found is None:
        return None, _unknown(tool, f"'{name}'")
    c = _with(found, schedule)
    if c is None:
        return None, _unknown(tool, f"'{name}'")
    return c.name, found.approximate


def _alias(low: str) -> Sampler | None:
    return next((s for s in SAMPLERS if low == s.name.lower() or low in s.aliases or low in s.comfy), None)


def to_a1111(name: str, flow: bool = False) -> tuple[str, str]:
    """(A1111 `Sampler`, `Schedule type`) for a Handoff name; the plain schedule is written
    as A1111 names it for such a model (Simple for flow-matching ones, else Normal)."""
    c = choice(name)
    if c is None:
        return name, "Automatic"
    if c.schedule.plain:
        return c.sampler.written(), "Simple" if flow or c.sampler.noise is None else "Normal"
    return c.sampler.written(), c.schedule.name


def to_comfy(name: str, flow: bool = False) -> tuple[str, str]:
    """(ComfyUI `sampler_name`, `scheduler`) for a Handoff name."""
    c = choice(name)
    if c is None:
        return "euler", "simple" if flow else "normal"
    sampler = c.sampler.comfy[0] if c.sampler.comfy else "euler"
    if c.sampler is SAMPLERS[-1]:  # Flow Euler
        sampler = "euler"
    if c.schedule.plain:
        return sampler, "simple" if flow or c.sampler.noise is None else "normal"
    return sampler, c.schedule.comfy or "normal"


def name_for_config(config: dict | None) -> str | None:
    """The Handoff name of the scheduler a model ships with (its scheduler_config.json),
    None when no row matches it."""
    if not isinstance(config, dict):
        return None
    cls = config.get("_class_name")
    if not isinstance(cls, str):
        return None
    flow = cls.startswith("FlowMatch")
    algorithm = config.get("algorithm_type")
    for c in CHOICES.values():
        if c.cls(flow) != cls or c.sampler.name == "Flow Euler":
            continue
        wanted = c.options()
        if "algorithm_type" in wanted and wanted["algorithm_type"] != algorithm:
            continue
        if "algorithm_type" not in wanted and algorithm not in (None, "dpmsolver++", "deis", "bh2", "bh1"):
            continue
        flags = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
        if any(bool(config.get(f)) != bool(wanted.get(f)) for f in flags):
            continue
        if (config.get("timestep_spacing") == "trailing") != (wanted.get("timestep_spacing") == "trailing"):
            continue
        return c.name
    return None
