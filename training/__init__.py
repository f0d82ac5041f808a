"""The two-stage SparkVSR trainer.

Stage 1 (``python -m training.stage1``) supervises the one-step x0 prediction in latent space;
stage 2 (``python -m training.stage2``) decodes it and supervises in pixels. Both run under
``accelerate launch`` (one GPU, many, or several machines; DeepSpeed ZeRO-2 or FSDP configs in
``training/accelerate_configs``). ``python -m training.export CKPT OUT`` turns a checkpoint into
the pipeline folder the ``dit`` engine loads.

Modules: ``config`` (typed settings), ``degradations`` (LR synthesis), ``keyframe_sampler``,
``data`` (indexing and samples), ``model`` (the trainable one-step restorer), ``losses``,
``loop`` (the accelerate loop both stages share), ``export``.
"""
