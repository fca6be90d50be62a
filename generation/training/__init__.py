"""Shared training infrastructure for the generators (diffusion, ProGAN). Pure torch, no Django.

Public API (import from the submodules):

data.py
    DataError                                   bad data folder; the message names file/row/label
    PatchDataset(root, *, split=None, classes=None, image_size=None, max_bad_fraction=0.01)
        items (uint8 3xHxW tensor, label index); .classes, .class_to_index, .image_size, .skipped,
        .class_counts(). manifest.csv (path,label[,split]) or one sub-folder per class.
    make_loader(dataset, *, batch_size, seed, start_step=0, rank=0, world_size=1, num_workers=0)
        endless DataLoader; the batch for step s depends only on (seed, s, rank): exact resume.
    step_generator(seed, step, rank=0, stream=0, device="cpu") -> torch.Generator
        per-step randomness (augmentation, noise, timesteps) independent of global RNG state.
    augment_dihedral(images, generator)         random flips + 90-degree rotations per image
    to_model_range(uint8) -> [-1, 1];  to_uint8([-1, 1]) -> uint8

checkpoint.py
    checkpoint_save(path, *, kind, config, model, step, ema=None, optimizer=None, extra=None) -> Path
        atomic (tmp + os.replace); stores {format, kind, config, model, ema, optimizer, step, rng, extra}
    checkpoint_load(path, *, kind=None, map_location="cpu") -> dict   (CheckpointError on problems)
    rng_state_capture() / rng_state_restore(state);  unwrap(model) strips DDP / compile wrappers

ema.py
    EMA(model, decay): .update(model), .shadow (a model), .state_dict(), .load_state_dict()

logging.py
    MetricsLog(path.csv|path.jsonl, *, resume_step=None, enabled=True).log(step, **metrics)
        (a new log starts empty; with resume_step rows after that step are dropped)
    metrics_read(path) -> list[dict]
    Progress(*, total, initial=0, desc, enabled).update(loss=..., images=n); .close()

grids.py
    grid_save(images [-1,1] or uint8 NCHW, path, *, nrow=None) -> Path

distributed.py
    DeviceError; device_resolve(name="auto", *, bf16=False) -> torch.device
    distributed_setup(device="auto", *, bf16=False) -> DistEnv(rank, local_rank, world_size, device)
    distributed_cleanup(); ddp_wrap(model, env); mean_across_ranks(t, env); barrier(env)
    seed_everything(seed, rank=0)

loop.py
    NonFiniteLossError; check_finite(metrics, *, step, last_checkpoint)
    LoopSchedule(total_steps, log_every, sample_every, save_every)
    loop_run(*, step_fn, start_step, schedule, env, images_per_step, metrics_log, save_fn,
             sample_fn=None, last_checkpoint=None, desc="train", progress=True, on_progress=None,
             progress_offset=0, progress_total=None) -> final step (less than total: stopped)
        step_fn(step) does one optimiser step and returns {"loss": tensor, ...}; the loop handles
        progress bar, on_progress (False: clean stop, checkpoint written), metrics log
        (rank-averaged), NaN guard, sample grids and checkpoints.

progress.py
    OnProgress = (step, total, metrics) -> bool | None   the one progress/cancel protocol
    progress_call(callbacks, step, total, metrics) -> stop?;  ProgressBar (tqdm, as a callback)
    StopRequested                                        sampling stopped on request

fastpath.py
    FastPath(bf16, channels_last, compile, tf32, fused_adamw, num_workers, device_augment)
        None = on on CUDA, off on a CPU; .resolve(device), .autocast(device), .compiled(module),
        .adamw(params, ...), .memory_format(), .apply_global()
"""
