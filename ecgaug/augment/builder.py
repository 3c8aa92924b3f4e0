"""Generate a plan's synthetic ECGs into a cache: resumable, safe with several builders, split across ranks.

:func:`build_cache` walks the shards of a :class:`~ecgaug.augment.cache.SyntheticCache`, skips
complete ones, and for each other shard takes its lock, re-checks, generates the shard's jobs
in one ``generate`` call (one ``torch.Generator`` per ECG, seeded from the plan, so the result
does not depend on batching, device or rank) and writes it atomically. A killed build therefore
resumes where it stopped (deleting the temporary files it left), and two builders on one cache
split the work instead of repeating it. A running builder is registered in the cache, so
``overwrite`` from another build is refused while it runs, and it re-reads ``cache.json`` before
writing each shard, so it never writes into a cache rebuilt with other settings.

:func:`run_build` adds ``torchrun``: with ``WORLD_SIZE=K`` rank ``r`` takes shards ``r, r+K, ...``,
and rank 0 merges the manifest after a barrier.

Real-guided plans (``PlanConfig(seed_ecgs=True)``): every job names a ``seed_index`` in the wrapped
data set; the builder (given that data set as ``seed_dataset``) passes those records' signals to
``generate`` as ``init_ecgs`` with the settings' ``strength`` (< 1), after checking that the data
set is the one the plan was made from (:func:`check_seed_dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from tqdm.auto import tqdm

from ecgaug.distributed import distributed_context, distributed_env
from ecgaug.schedulers import SCHEDULERS
from ecgaug.settings import GenerationSettings
from ecgaug.signal import convert_ecg

from .cache import SHARD_DIR, CacheConfig, CacheMismatchError, SyntheticCache, _remove_temporaries, generator_key
from .plan import SEED_COLUMN, GenerationPlan, seed_source

__all__ = ["BuildResult", "ECGGenerator", "build_cache", "build_settings", "build_shard", "check_seed_dataset", "generate_shard",
           "run_build"]


class ECGGenerator(Protocol):
    """What the cache builder needs from a model (``ecgaug.pipeline.DiffuSETSPipeline`` satisfies it)."""

    model_id: str

    @property
    def sampler_name(self) -> str:
        ...

    def generate(
        self,
        reports: Sequence[str],
        age: Sequence[float],
        sex: Sequence[str],
        heart_rate: Sequence[float],
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        lead_order: str = "ptbxl",
        sampling_rate: float = 100.0,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """``(len(reports), 12, num_samples)`` float32 ECGs in mV, 10 s at ``sampling_rate``."""
        ...


@dataclass
class BuildResult:
    """What one builder (one rank) did.

    Attributes:
        rank: This process's rank (0 without torchrun).
        world_size: Number of ranks.
        written: Shards this builder generated and wrote.
        already_complete: Shards of this rank that were complete (earlier run or another builder).
    """

    rank: int = 0
    world_size: int = 1
    written: list[int] = field(default_factory=list)
    already_complete: list[int] = field(default_factory=list)


def check_generator(cache: SyntheticCache, generator: ECGGenerator) -> None:
    """Refuse a generator other than the one that made the cache.

    Compares the model id and sampler name, and what :func:`~ecgaug.augment.cache.generator_key`
    reads from the generator (text encoder, full sampler config, precision). Each of the last three
    is compared only where both sides have it: a cache written before it was recorded accepts any,
    and so does a cache for a generator without the attribute (they are not part of :class:`ECGGenerator`).
    """
    config = cache.config
    theirs = (generator.model_id, generator.sampler_name)
    if theirs != (config.model_id, config.sampler):
        raise CacheMismatchError(
            f"The cache at {cache.root} holds ECGs of model {config.model_id!r} with sampler {config.sampler!r}, "
            f"but the generator is model {theirs[0]!r} with sampler {theirs[1]!r}. Use the same model and "
            "scheduler, or build a new cache (another --output_dir, or --overwrite)."
        )
    # What generator_key reads (text encoder, full sampler config, arithmetic), where both sides recorded it.
    labels = {"text_encoder": "text encoder", "scheduler_config": "sampler configuration", "precision": "precision"}
    for name, theirs in generator_key(generator).items():
        mine = getattr(config, name)
        if mine is None or theirs is None or mine == theirs:
            continue
        if isinstance(mine, dict):
            differ = sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))
            detail = ", ".join(f"{key}: the cache has {mine.get(key)!r}, the generator {theirs.get(key)!r}" for key in differ[:5])
            problem = f"holds ECGs of another {labels[name]} than the generator's ({detail})"
        else:
            problem = f"holds ECGs made with {labels[name]} {mine!r}, but the generator uses {theirs!r}"
        raise CacheMismatchError(f"The cache at {cache.root} {problem}. Use the same settings, or build a new cache "
                                 "(another --output_dir, or --overwrite).")


def check_seed_dataset(plan: GenerationPlan, seed_dataset) -> None:
    """Refuse a seed data set that is not the one ``plan``'s seed ECGs index.

    A plan with seed ECGs needs its seed data set: every ``seed_index`` inside it, and the same
    split, folds, number of records and record ids as when the plan was made (``plan.seed_source``);
    a held-out split is refused (:func:`~ecgaug.augment.plan.seed_source`). A plan without seed
    ECGs takes none.

    Raises:
        ValueError: naming the problem.
    """
    if not plan.has_seeds:
        if seed_dataset is not None:
            raise ValueError("the plan has no seed ECGs (PlanConfig(seed_ecgs=False)), so it takes no seed data set")
        return
    if seed_dataset is None:
        raise ValueError("the plan has seed ECGs (seed_index), so the build needs the data set they index (seed_dataset=)")
    size = len(seed_dataset)
    outside = plan.jobs.loc[plan.jobs[SEED_COLUMN] >= size]
    if len(outside):
        row = outside.iloc[0]
        raise ValueError(f"seed_index {int(row[SEED_COLUMN])} (job {int(row['index'])}) is outside the seed data set, which has "
                         f"{size} records; build against the data set the plan was made from")  # fmt: skip
    theirs, mine = seed_source(seed_dataset), plan.seed_source
    differ = [f"{name} {mine.get(name)!r} in the plan but {theirs.get(name)!r} in the seed data set"
              for name in ("split", "folds", "num_records", "ids_sha256") if mine.get(name) != theirs.get(name)]  # fmt: skip
    if differ:
        raise ValueError(f"the seed data set is not the one the plan's seeds come from: {'; '.join(differ)}")
    for name in ("transform", "target_transform"):
        base = getattr(seed_dataset, "dataset", seed_dataset)
        if getattr(base, name, None) is not None:
            raise ValueError(f"the seed data set has a {name}; seeds should be its raw records (build it without one)")


def seed_signals(seed_dataset, indices, *, lead_order: str, num_samples: int) -> torch.Tensor:
    """``(len(indices), 12, num_samples)`` float32 signals of ``seed_dataset``'s records ``indices`` in ``lead_order``."""
    base = getattr(seed_dataset, "dataset", seed_dataset)
    source_leads = getattr(base, "lead_order", "ptbxl")
    signals = torch.stack([torch.as_tensor(seed_dataset[int(i)][0], dtype=torch.float32) for i in indices])
    if signals.ndim != 3 or signals.shape[1] != 12:
        raise ValueError(f"seed records should be (12, num_samples) signals, but got {tuple(signals.shape[1:])}")
    return convert_ecg(signals, source_leads=source_leads, target_leads=lead_order,
                       num_samples=None if signals.shape[-1] == num_samples else num_samples).float()  # fmt: skip


def generate_shard(cache: SyntheticCache, generator: ECGGenerator, shard: int, *, batch_size: int | None = None,
                   show_progress: bool = False, seed_dataset=None) -> torch.Tensor:  # fmt: skip
    """Generate the ECGs of ``shard``: ``(rows, 12, num_samples)`` float32 in the cache's lead order and rate.

    For a plan with seed ECGs, ``seed_dataset`` (checked by :func:`check_seed_dataset`) supplies
    the ``init_ecgs`` that ``generate`` starts from, with the cache's ``strength``.
    """
    start, stop = cache.shard_bounds(shard)
    jobs = cache.plan.jobs.iloc[start:stop]
    config = cache.config
    seeded = {}
    if cache.plan.has_seeds:
        if seed_dataset is None:
            raise ValueError(f"the cache at {cache.root} is real-guided (its plan has seed ECGs): pass seed_dataset=")
        seeded = {"init_ecgs": seed_signals(seed_dataset, jobs[SEED_COLUMN], lead_order=config.lead_order, num_samples=config.num_samples),
                  "strength": config.strength}  # fmt: skip
    # CPU generators: the initial noise is the same on every device, so GPU and CPU builds agree.
    seeds = [torch.Generator().manual_seed(int(seed)) for seed in jobs["seed"]]
    signals = generator.generate(
        jobs["report"].tolist(),
        jobs["age"].tolist(),
        jobs["sex"].tolist(),
        jobs["heart_rate"].tolist(),
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        generator=seeds,
        lead_order=config.lead_order,
        sampling_rate=config.sampling_rate,
        batch_size=batch_size,
        show_progress=show_progress,
        **seeded,
    )
    expected = (stop - start, 12, config.num_samples)
    if tuple(signals.shape) != expected:
        raise ValueError(
            f"generator {generator.model_id!r} returned shape {tuple(signals.shape)} for shard {shard}, expected {expected} "
            f"(10 s at {config.sampling_rate:g} Hz)"
        )
    return signals


def build_shard(cache: SyntheticCache, generator: ECGGenerator, shard: int, *, blocking: bool = True,
                batch_size: int | None = None, seed_dataset=None) -> bool | None:  # fmt: skip
    """Generate and write one shard unless it is complete.

    Returns:
        True if this call wrote the shard, False if it was already complete, None if ``blocking``
        is False and another builder holds the shard's lock.
    """
    with cache.lock_shard(shard, blocking=blocking) as acquired:
        if not acquired:
            return None
        if cache.is_complete(shard):
            return False
        _remove_temporaries(cache.root / SHARD_DIR, prefix=f".shard-{shard:06d}.")  # of a builder killed mid-write
        cache.write_shard(shard, generate_shard(cache, generator, shard, batch_size=batch_size, seed_dataset=seed_dataset))
        return True


def build_cache(
    cache: SyntheticCache,
    generator: ECGGenerator,
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int | None = None,
    merge: bool = True,
    show_progress: bool = True,
    seed_dataset=None,
) -> BuildResult:
    """Generate every missing shard of ``rank``'s share (shards ``rank, rank + world_size, ...``).

    Shards another builder is writing are skipped on the first pass and waited for at the end,
    so when this returns every shard of the share is complete. The builder is registered in the
    cache meanwhile (:meth:`SyntheticCache.register_builder`).

    Args:
        cache: The cache, e.g. from :meth:`SyntheticCache.create`.
        generator: The model; it must match the cache's (:func:`check_generator`).
        rank, world_size: This builder's share of the shards.
        batch_size: Passed to ``generator.generate`` (``None``: the generator's default).
        merge: Write ``manifest.csv`` at the end (leave to rank 0 when ranks share a cache).
        show_progress: Show a tqdm bar over shards.
        seed_dataset: For a real-guided cache, the data set its plan's ``seed_index`` values index
            (:func:`check_seed_dataset`); None otherwise.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank should be in [0, {world_size}), but got rank={rank}")
    check_generator(cache, generator)
    check_seed_dataset(cache.plan, seed_dataset)
    result = BuildResult(rank=rank, world_size=world_size)
    share = range(rank, cache.num_shards, world_size)
    done = cache.completed_shards()
    result.already_complete = [shard for shard in share if shard in done]
    todo = [shard for shard in share if shard not in done]
    busy = []
    progress = tqdm(total=len(todo), desc=f"building cache (rank {rank})" if world_size > 1 else "building cache",
                    unit="shard", disable=not show_progress)  # fmt: skip
    with cache.register_builder():
        with progress:
            for blocking, shards in ((False, todo), (True, busy)):
                for shard in list(shards):
                    written = build_shard(cache, generator, shard, blocking=blocking, batch_size=batch_size, seed_dataset=seed_dataset)
                    if written is None:
                        busy.append(shard)
                        continue
                    (result.written if written else result.already_complete).append(shard)
                    progress.update(1)
        if merge:
            cache.merge_manifest()
    return result


def build_settings(generator: ECGGenerator, settings: GenerationSettings | None = None, *, seeded: bool = False) -> GenerationSettings:
    """The :class:`~ecgaug.settings.GenerationSettings` a build of ``generator`` runs with, checked against it.

    ``settings=None`` takes the defaults, with the generator's own sampler (so the default number
    of steps is that sampler's). A settings scheduler that names a different diffusers sampler
    than the generator's is refused: the cache would record steps meant for another sampler.
    ``seeded`` (a plan with seed ECGs) needs ``strength`` < 1, and ``strength`` < 1 needs ``seeded``.
    """
    if seeded and (settings is None or not isinstance(settings, GenerationSettings) or settings.strength >= 1.0):
        strength = getattr(settings, "strength", 1.0)
        raise ValueError(f"the plan has seed ECGs, so the build needs settings with strength < 1 (how far the seeds are "
                         f"noised), but got strength={strength:g}; pass GenerationSettings(strength=0.5), say")  # fmt: skip
    if settings is None:
        own = generator.sampler_name
        return GenerationSettings(scheduler=own if own in SCHEDULERS else GenerationSettings.scheduler)
    if not isinstance(settings, GenerationSettings):
        raise TypeError(f"settings should be a GenerationSettings, but got {type(settings).__name__}")
    if settings.strength != 1.0 and not seeded:
        raise ValueError(f"a plan without seed ECGs is generated from pure noise (strength 1), but settings have "
                         f"strength={settings.strength:g}; plan with PlanConfig(seed_ecgs=True) to start from real records")  # fmt: skip
    if generator.sampler_name in SCHEDULERS and generator.sampler_name != settings.sampler_name:
        raise ValueError(f"the settings name sampler {settings.sampler_name!r}, but the generator samples with "
                         f"{generator.sampler_name!r}; load the generator from the same settings (DiffuSETSPipeline.from_settings)")  # fmt: skip
    return settings


def run_build(
    output_dir,
    plan: GenerationPlan,
    generator: ECGGenerator,
    settings: GenerationSettings | None = None,
    *,
    shard_size: int = 256,
    overwrite: bool = False,
    show_progress: bool = True,
    seed_dataset=None,
) -> tuple[SyntheticCache, BuildResult]:
    """Create (or resume) the cache at ``output_dir`` and generate ``plan`` into it.

    Args:
        output_dir: The cache folder.
        plan: What to generate.
        generator: The model, e.g. ``DiffuSETSPipeline.from_settings(settings)``, on its device.
        settings: Steps, guidance, lead order, sampling rate and batch size (see
            :func:`build_settings`; None: the defaults with the generator's sampler). Everything but
            the batch size goes into the cache's key, with the number of steps resolved.
        shard_size: ECGs per shard.
        overwrite: Delete a cache made with other settings instead of refusing it.
        show_progress: Show a tqdm bar over shards.
        seed_dataset: For a plan with seed ECGs (``plan.has_seeds``): the data set the plan was made from,
            whose records ``seed_index`` names; they are generated from with ``settings.strength`` (< 1,
            part of the cache's key). Checked before any cache is created (:func:`check_seed_dataset`).

    Under ``torchrun --nproc_per_node K`` (``WORLD_SIZE=K``), rank 0 creates the cache, every rank
    builds its share of the shards, and rank 0 merges the manifest; the ranks meet at barriers of
    a ``gloo`` process group (created here unless one exists; only barriers are needed, so
    ``gloo`` serves GPU builds too). Put the generator on ``cuda:LOCAL_RANK`` before calling
    (:func:`ecgaug.distributed.local_device`).

    Returns:
        The cache and this rank's :class:`BuildResult`.

    Raises:
        CacheMismatchError: if ``output_dir`` holds a cache made with other settings and not ``overwrite``.
        CacheBusyError: if ``overwrite`` and another builder is writing ``output_dir``.
        ValueError: if ``settings`` do not fit the generator or the plan (:func:`build_settings`), or the
            seed data set does not fit the plan (:func:`check_seed_dataset`).
    """
    settings = build_settings(generator, settings, seeded=plan.has_seeds)
    check_seed_dataset(plan, seed_dataset)
    config = CacheConfig.for_plan(
        plan,
        model_id=generator.model_id,
        sampler=generator.sampler_name,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        lead_order=settings.lead_order,
        sampling_rate=settings.sampling_rate,
        shard_size=shard_size,
        strength=settings.strength,
        **generator_key(generator),  # its text encoder and full sampler config (None for generators without them)
    )
    batch_size = settings.batch_size
    env = distributed_env()
    rank, world_size = env.rank, env.world_size
    if world_size == 1:
        cache = SyntheticCache.create(output_dir, config, plan, overwrite=overwrite)
        return cache, build_cache(cache, generator, batch_size=batch_size, show_progress=show_progress, seed_dataset=seed_dataset)

    import torch.distributed as dist

    created_group = not dist.is_initialized()
    distributed_context(backend="gloo")  # joins the group unless one exists
    try:
        if rank == 0:  # only rank 0 may delete an existing cache
            cache = SyntheticCache.create(output_dir, config, plan, overwrite=overwrite)
        dist.barrier()
        if rank != 0:
            cache = SyntheticCache.create(output_dir, config, plan, overwrite=False)
        result = build_cache(cache, generator, rank=rank, world_size=world_size, batch_size=batch_size,
                             merge=False, show_progress=show_progress and rank == 0, seed_dataset=seed_dataset)  # fmt: skip
        dist.barrier()
        if rank == 0:
            cache.merge_manifest()
        dist.barrier()
    finally:
        if created_group:
            dist.destroy_process_group()
    return cache, result
